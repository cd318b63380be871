# postflow in a container: a release build in the first stage, then a small Debian image that
# runs it as an unprivileged user, with the store on a volume and the configuration baked in
# (mount your own over /app/flows, /app/formats and /app/prompts to edit it live).
#
#   docker build -t postflow .
#   docker run -d --name postflow --env-file .env -v postflow-data:/app/data -p 8080:8080 postflow

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: a change to src/ does not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY benches ./benches
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin postflow \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin postflow

FROM debian:bookworm-slim AS runtime
# TLS roots for Telegram and the AI; DejaVu Sans draws the Armenian letters in charts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 postflow \
    && useradd --system --uid 10001 --gid postflow --home-dir /app --shell /usr/sbin/nologin postflow \
    && mkdir -p /app/data \
    && chown postflow:postflow /app/data
WORKDIR /app
COPY --from=build /src/target/release/postflow /usr/local/bin/postflow
COPY flows ./flows
COPY formats ./formats
COPY prompts ./prompts
USER postflow:postflow
ENV CONFIG_DIR=/app \
    DATABASE_URL=/app/data/postflow.redb \
    HTTP_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json \
    LOG_LEVEL=info
EXPOSE 8080
VOLUME ["/app/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["postflow", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["postflow"]
CMD ["run"]
