"""Reports: what a job's results look like on paper or in a file a bureau hands on — tables (Markdown, CSV,
xlsx), the 绩效自评表, charts, exports of flagged patches. They take the results of services/jobs and write
files or text; they compute nothing new.

- indicators.py  indicator tables of a run (json, csv, md, xlsx)
- selfeval.py    the 绩效自评表 (xlsx in the seed tables' layout, md)
- charts.py      report charts with Chinese labels (PNG / SVG)
- patches.py     exports of flagged patches (gpkg, zipped shapefile in UTF-8 or GBK, xlsx)
"""
