# One image for every JustWalk process (gateway, processor, sink); the command picks one:
#   docker run justwalk-stream gateway | processor | sink | dashboards build | ...
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY justwalk ./justwalk
COPY ingest ./ingest
COPY stream_processors ./stream_processors
COPY sinks ./sinks
RUN pip wheel --wheel-dir /wheels ".[grafana]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# Headless Chromium prints the progress reports' PDF (justwalk.report.browser; the API's
# report.pdf): Debian's package, with the DejaVu fonts the report and its plots name and
# Liberation (metric-compatible Arial/Helvetica) for the fallbacks. No recommends: no
# desktop pieces; it runs headless with --no-sandbox as the justwalk user.
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium fonts-dejavu-core fonts-liberation \
    && rm -rf /var/lib/apt/lists/*
ENV JUSTWALK_CHROMIUM_BINARY=/usr/bin/chromium
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels "justwalk-stream[grafana]" \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/justwalk --create-home justwalk \
    && install -d -o justwalk -g justwalk /var/lib/justwalk/alerts /var/lib/justwalk/grafana
# (named volumes mounted there start out owned by justwalk, so the services can write them)
USER justwalk
WORKDIR /var/lib/justwalk
# The gait and fall kernels are compiled once here (tens of seconds) and their cache ships
# with the image, so a container starts with machine code instead of compiling.
ENV NUMBA_CACHE_DIR=/var/lib/justwalk/numba-cache
RUN python -m justwalk.warmup
EXPOSE 8080
ENTRYPOINT ["justwalk"]
CMD ["--help"]
