# The wallet service: one image for `wallet serve`, `wallet worker` and `wallet migrate`.
# docker-compose.yml runs each of them; `docker run IMAGE` alone serves the API on :8000.

# Build stage: wallet and its dependencies installed into a virtual environment, the only thing
# the runtime stage takes from here. The dependencies are exactly those of
# requirements/production.lock, each checked against its hash: the same versions on every
# build. No `embedded` extra: the image talks to a PostgreSQL and a Redis of its own.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/wallet
WORKDIR /build
# The lock first, alone: the dependencies' layer is rebuilt only when it changes.
COPY requirements/production.lock ./requirements/
RUN /opt/wallet/bin/pip install --require-hashes -r requirements/production.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/wallet/bin/pip install --no-deps .
# Every installed package's requirements met: a lock edited by hand fails the build, not a start.
RUN /opt/wallet/bin/pip check

# Runtime stage: the same Python (so the venv's links hold), no build tools, not root.
FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 wallet \
    && useradd --system --uid 10001 --gid wallet --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin wallet
COPY --from=build /opt/wallet /opt/wallet
# Production unless told otherwise: `docker run` alone must not serve /readyz's details (hosts,
# databases) or accept loopback WebSocket origins, as development does.
ENV PATH=/opt/wallet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WALLET_ENVIRONMENT=production
# Numeric, so that a runtime that enforces non-root (runAsNonRoot) can check it.
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["wallet"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
