# syntax=docker/dockerfile:1
#
# fetchd image: a static binary on distroless, run as the non-root user
# (uid 65532). Build it with `docker build -t fetchd .` or through
# docker-compose.yaml.

# The build stage follows go.mod's Go minor (go 1.26.0); CGO is off, so the
# Debian release of this stage does not matter to the binary.
FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, as their own layer: a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/fetchd ./cmd/fetchd

# static-debian12: CA certificates, tzdata, /etc/passwd with nonroot; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fetchd /fetchd
USER nonroot:nonroot
# The default store (file:data/fetchd.db) is relative: /home/nonroot is the
# one directory nonroot may write. With --store redis://... nothing is written.
WORKDIR /home/nonroot
# 7070: gRPC (FetchService). 7071: admin HTTP (health, /metrics).
EXPOSE 7070 7071
ENTRYPOINT ["/fetchd"]
# Listen on every interface: inside a container, loopback is unreachable from
# other containers and from published ports.
CMD ["--listen", "0.0.0.0:7070", "--admin", "0.0.0.0:7071"]
