# One image for every JustWalk process (gateway, processor, sink); the command picks one.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY justwalk ./justwalk
COPY ingest ./ingest
COPY stream_processors ./stream_processors
COPY sinks ./sinks
RUN pip install --no-cache-dir . && useradd --system --uid 10001 justwalk
USER justwalk
ENTRYPOINT ["justwalk"]
