# yizhangtu service image — a thin mirror of scripts/setup.sh, the install that CI proves on every run.
# It leaves out what only the tests need (the PostGIS server and Chromium): point YZT_STORE at a
# GeoPackage in a volume or at a PostGIS database.
#
#   docker build -t yizhangtu .
#   docker run -p 8000:8000 -v $PWD/out:/app/out yizhangtu yzt demo          # the sample county
#   docker run -p 8000:8000 -v $PWD/out:/app/out yizhangtu                   # serve out/sample/store.gpkg
FROM python:3.12-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-noto-cjk fontconfig nodejs npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY layers layers
COPY analysis analysis
COPY services services
COPY data data
# editable, as in scripts/setup.sh: the web page's npm assets live in services/web (beside its code)
RUN pip install --no-cache-dir -e . \
 && (cd services/web && npm ci --no-audit --no-fund --loglevel=error) \
 && python -m services.jobs.glyphs --out services/web/glyphs

ENV YZT_STORE=/app/out/sample/store.gpkg
EXPOSE 8000
CMD ["sh", "-c", "yzt serve --store \"$YZT_STORE\" --host 0.0.0.0 --port 8000"]
