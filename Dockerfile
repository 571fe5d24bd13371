# One image for every service of the stack; the subcommand picks the service:
#   docker run IMAGE ingest | simulate | edge | dispatch | web | stack-secrets | backup
# Debian 12 as the base, as on the machines the tests run on.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The programs the `estate` command runs besides Python: openssl and mosquitto_passwd
# (from the mosquitto package) for `estate stack-secrets`, pg_dump and pg_restore
# (postgresql-client) for `estate backup` and `estate restore`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssl mosquitto postgresql-client \
    && rm -rf /var/lib/apt/lists/*

# Install the package and only its runtime dependencies, at the versions of
# requirements.lock (as constraints, also for the build backend), then drop the sources.
WORKDIR /tmp/src
COPY . .
RUN PIP_CONSTRAINT=requirements.lock pip install . && cd / && rm -rf /tmp/src

# Run as an unprivileged user. /var/lib/estate is its home and the mount point of the
# services' state volumes; creating it here makes a fresh named volume owned by this user.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/estate --create-home \
        --shell /usr/sbin/nologin estate
USER estate
WORKDIR /var/lib/estate

EXPOSE 8000 9101 9103 9104
ENTRYPOINT ["estate"]
CMD ["--help"]
