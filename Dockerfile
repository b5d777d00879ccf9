# trapgate node image. The embedded defaults listen on loopback only: mount a
# config whose addresses are 0.0.0.0 and run `trapgate run -c /etc/trapgate.toml`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY formats ./formats
COPY dedup ./dedup
COPY gateway ./gateway
RUN pip install --no-cache-dir . \
    && useradd --system trapgate \
    && mkdir -p /var/lib/trapgate && chown trapgate /var/lib/trapgate
USER trapgate
WORKDIR /var/lib/trapgate
EXPOSE 1514/udp 1514/tcp 8082/tcp 9180/tcp
ENTRYPOINT ["trapgate"]
CMD ["run"]
