# The chart's Redis image for the container tests: no registry is reachable here, so Debian's
# redis-server package on the stand-in base takes the place of the official image. What the
# chart relies on is the same: `redis-server` as the entry point (the chart passes only
# arguments), `redis-cli` for its probes, a /data directory, and nothing that needs root.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data
WORKDIR /data
ENTRYPOINT ["redis-server"]
