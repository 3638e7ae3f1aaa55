# A small image of one lgsp hub node (docs/operations.md, "Chạy bằng container").
# No container registry is reachable from the machines this project is built on, so this image is
# not built in CI: it takes exactly the steps tests/test_deploy.py proves with the systemd unit (a
# wheel installed in its own venv under /opt/lgsp/venv, a non-root user, settings by environment,
# the same command), and the test checks that it still does.
#   docker build -t lgsp .    then see compose.yaml

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN python -m pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim
RUN useradd --system --user-group --home-dir /var/lib/lgsp --create-home --shell /usr/sbin/nologin lgsp \
    && chmod 0700 /var/lib/lgsp \
    && python -m venv /opt/lgsp/venv
COPY --from=build /wheels /wheels
RUN /opt/lgsp/venv/bin/pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/lgsp.yaml /etc/lgsp/lgsp.yaml
# Every setting can be overridden by LGSP_<PATH> (secrets too: LGSP_DATABASE_URL with its password).
ENV LGSP_HUB_DATA_DIR=/var/lib/lgsp \
    LGSP_SERVER_HOST=0.0.0.0 \
    LGSP_SERVER_PORT=8080 \
    PYTHONUNBUFFERED=1
USER lgsp
WORKDIR /var/lib/lgsp
VOLUME ["/var/lib/lgsp"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/opt/lgsp/venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["/opt/lgsp/venv/bin/lgsp", "run", "--config", "/etc/lgsp/lgsp.yaml"]
