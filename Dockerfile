# Multi-stage: build a wheel with the build tools, install it into a clean slim image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
COPY databricks_simulator ./databricks_simulator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin exporter \
    && mkdir -p /var/lib/databricks-exporter && chown 10001 /var/lib/databricks-exporter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
EXPOSE 9180
# GET /healthz on 127.0.0.1:9180 (HEALTHCHECK_PORT), over HTTP or, with a TLS web config, HTTPS.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-m", "exporter.healthcheck"]
ENTRYPOINT ["databricks-exporter"]
CMD ["--state-file", "/var/lib/databricks-exporter/state.json"]
