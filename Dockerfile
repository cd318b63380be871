# Build a release binary, then ship it with the configuration in a small image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin postflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates fonts-dejavu-core && rm -rf /var/lib/apt/lists/*
RUN useradd --system --home /app postflow && mkdir -p /app/data && chown postflow /app/data
WORKDIR /app
COPY --from=build /src/target/release/postflow /usr/local/bin/postflow
COPY flows ./flows
COPY formats ./formats
COPY prompts ./prompts
USER postflow
ENV CONFIG_DIR=/app DATABASE_URL=/app/data/postflow.redb LOG_FORMAT=json HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
VOLUME /app/data
ENTRYPOINT ["postflow"]
CMD ["run"]
