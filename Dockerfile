# syntax=docker/dockerfile:1
# One image for every wirelab process on a cluster: the Locust master, UI and workers (the
# chart runs `wirelab cluster master|ui|worker`), the reference targets
# (`wirelab targets serve ...`) and the helm test. Different commands, same bits.
#
#   docker build -t ghcr.io/wirelab/wirelab:0.1.0 .
#
# Behind a TLS-intercepting proxy, pip in the build needs the proxy's CA; hand it over as PEM
# text (it is trusted in the build stage only, never copied into the runtime image):
#
#   docker build --build-arg EXTRA_CA_CERTS="$(cat corp-ca.pem)" -t ghcr.io/wirelab/wirelab:0.1.0 .
#
# PIP_INDEX_URL and PIP_EXTRA_INDEX_URL build arguments point pip at a mirror the same way.
#   docker run --rm -p 8080:8080 ghcr.io/wirelab/wirelab:0.1.0 targets serve rest --host 0.0.0.0 --port 8080

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# No defaults: unset, pip uses its own index and the base's trust store.
ARG EXTRA_CA_CERTS
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
WORKDIR /src
# The pins and the declared dependencies first: this layer (every download) is rebuilt only
# when they change, not when wirelab's own code does.
COPY constraints.txt pyproject.toml ./
# A virtualenv is the unit that moves to the runtime stage: no compilers, no build leftovers.
# It gets pyproject.toml's dependencies, the kubernetes extra (the chart's master runs
# scenario actions through the API, WIRELAB_ORCHESTRATOR=kubernetes) and the build backend.
# The client's asyncio twin (kubernetes/aio, 68 MB) is never imported: wirelab uses the
# synchronous one. The extra CAs join the base's bundle (public roots stay trusted) for pip
# only, in this stage.
RUN if [ -n "${EXTRA_CA_CERTS:-}" ]; then \
        cat /etc/ssl/certs/ca-certificates.crt > /tmp/build-ca.pem \
        && printf '%s\n' "$EXTRA_CA_CERTS" >> /tmp/build-ca.pem \
        && export PIP_CERT=/tmp/build-ca.pem; \
    fi \
    && python -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); p = d["project"]; print("\n".join(d["build-system"]["requires"] + p["dependencies"] + p["optional-dependencies"]["kubernetes"]))' > /tmp/requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --constraint constraints.txt --requirement /tmp/requirements.txt \
    && rm -rf /opt/venv/lib/python3.11/site-packages/kubernetes/aio
COPY README.md ./
COPY wirelab ./wirelab
COPY targets ./targets
# wirelab itself, offline: its dependencies and build backend are in the venv already.
RUN /opt/venv/bin/pip install --constraint constraints.txt --no-deps --no-build-isolation --no-index . \
    && cd / && /opt/venv/bin/python -c "import wirelab.targets.runner, wirelab.users, locust, kubernetes"

FROM python:3.11-slim-bookworm
ARG UID=10001
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/tmp
RUN groupadd --system --gid ${UID} wirelab \
    && useradd --system --uid ${UID} --gid ${UID} --home-dir /tmp --shell /usr/sbin/nologin wirelab
COPY --from=build /opt/venv /opt/venv
# The same pins for extra packages installed at run time (the chart's run.extraPipPackages).
COPY constraints.txt /opt/wirelab/constraints.txt
COPY locustfiles /opt/wirelab/locustfiles
WORKDIR /tmp
# A numeric user, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080 8081 8082 8083 5557 8089
# No HEALTHCHECK: every role has its own readiness (/readyz, gRPC health, Locust's ports)
# and Kubernetes probes them; one image-wide check would be wrong for most of them.
ENTRYPOINT ["wirelab"]
CMD ["--help"]
