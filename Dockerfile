# trapgate node image. The embedded defaults listen on loopback only: mount a
# config whose addresses are 0.0.0.0 and run `trapgate run -c /etc/trapgate.toml`.
# The first stage compiles the fast path (gateway/receivers/_recvmmsg.c, formats/_syslog_fast.c)
# into a wheel.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY formats ./formats
COPY dedup ./dedup
COPY gateway ./gateway
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system trapgate \
    && mkdir -p /var/lib/trapgate && chown trapgate /var/lib/trapgate
USER trapgate
WORKDIR /var/lib/trapgate
EXPOSE 1514/udp 1514/tcp 8082/tcp 9180/tcp
ENTRYPOINT ["trapgate"]
CMD ["run"]
