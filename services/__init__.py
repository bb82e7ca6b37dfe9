"""services: the only room that reads settings, speaks HTTP / OGC API, draws web pages, or has a CLI."""
