# pyrestate server image: `docker build -t pyrestate .` then
#   docker run -p 8080:8080 -p 9070:9070 -v pyrestate-data:/data pyrestate
# Binds on all interfaces inside the container; the data directory is a volume so a new container resumes
# every invocation the previous one acknowledged.
FROM python:3.11-slim-bookworm

RUN useradd --system --create-home --home-dir /home/pyrestate pyrestate \
    && mkdir -p /data && chown pyrestate /data

WORKDIR /opt/pyrestate
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /opt/pyrestate/src

USER pyrestate
ENV PYRESTATE_DATA_DIR=/data \
    PYRESTATE_INGRESS_BIND=0.0.0.0:8080 \
    PYRESTATE_ADMIN_BIND=0.0.0.0:9070
VOLUME ["/data"]
EXPOSE 8080 9070
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9070/health', timeout=2)"
ENTRYPOINT ["pyrestate", "server"]
