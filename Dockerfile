# emergency-automation in a container: `emergency serve` (the passes on a timer, webhooks,
# /healthz, /readyz, /metrics and the status page) on port 8080.
#
#   docker build -t emergency-automation .
#   docker run -d --name emergency -p 8080:8080 --env-file secrets.env \
#     -v "$PWD/config.toml:/etc/emergency/config.toml:ro" \
#     -v emergency-state:/var/lib/emergency emergency-automation
#
# secrets.env: ZENDESK_API_TOKEN and, as configured, PAGERDUTY_API_TOKEN, SLACK_BOT_TOKEN,
# ZENDESK_WEBHOOK_SECRET, PAGERDUTY_WEBHOOK_SECRET; EMERGENCY_WEB_TOKEN is required, since
# the server listens beyond loopback. config.toml keeps its state in the volume:
#   [state] path = "/var/lib/emergency/state.sqlite3"
# Any other command runs the same way: `docker run --rm ... emergency-automation check`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what `pip install .` reads (.dockerignore keeps everything else out of the build).
COPY pyproject.toml README.md /src/
COPY automation /src/automation
COPY templates /src/templates
# With the report extra: the served /report draws its charts (matplotlib) as the CLI does.
RUN pip install "/src[report]" && rm -rf /src

RUN groupadd --system --gid 10001 emergency \
    && useradd --system --uid 10001 --gid emergency --no-create-home \
       --home-dir /var/lib/emergency --shell /usr/sbin/nologin emergency \
    && mkdir -p /var/lib/emergency /etc/emergency \
    && chown emergency:emergency /var/lib/emergency \
    && chmod 0700 /var/lib/emergency

ENV EMERGENCY_CONFIG=/etc/emergency/config.toml
WORKDIR /var/lib/emergency
VOLUME /var/lib/emergency
# By number, so a runtime that refuses root (runAsNonRoot) can tell without reading passwd.
USER 10001:10001
EXPOSE 8080

# slim has no curl: Python asks. urlopen raises on a refused connection or an HTTP error,
# which exits 1 (unhealthy). The port is CMD's; change both together.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["emergency"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
