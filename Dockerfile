# Multi-stage build: compile the release binary, then a small Debian runtime with bash and git.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash git ca-certificates procps \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/agent-server /usr/local/bin/agent-server
WORKDIR /workspace
ENV OH_CONVERSATIONS_PATH=/workspace/conversations \
    OH_BASH_EVENTS_DIR=/workspace/bash_events
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/agent-server"]
CMD ["--host", "0.0.0.0", "--port", "8000"]
