#!/usr/bin/env python3
"""Writes a one-layer OCI image archive that `ctr images import` accepts, without a registry.

It stands in for `docker build -f gateway/Dockerfile` / `operator/Dockerfile` where no registry
(and no Docker) is reachable. The image holds what the Dockerfiles' final stage holds, taken from
this machine instead of gcr.io/distroless/cc-debian12:nonroot:

- the binary at /usr/local/bin/<name> (the release build, not one built inside `rust:1-bookworm`);
- the shared libraries `ldd` lists for it and the dynamic loader (distroless/cc ships glibc,
  libgcc_s, libssl and a few more; we copy only those the binary links);
- /etc/passwd and /etc/group with root and nonroot (65532), /home/nonroot, /tmp (1777),
  /etc/nsswitch.conf, and the CA bundle at /etc/ssl/certs/ca-certificates.crt;
- the same config: User 65532:65532, Entrypoint [/usr/local/bin/<name>], WorkingDir
  /home/nonroot, PATH and SSL_CERT_FILE as in distroless, the Dockerfile's EXPOSE ports.

Usage: oci_image.py --binary PATH --name kafka-gateway:0.1.0 --expose 9092 ... --out image.tar
       [--extra SRC=DEST ...] [--label k=v ...]
The archive carries both an OCI index.json and a Docker manifest.json (RepoTags), so the image
is named on import.
"""
import argparse
import hashlib
import io
import json
import os
import subprocess
import tarfile

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
UID = 65532


def normalized(name):
    """The name the CRI looks images up by: `kcat:1` is docker.io/library/kcat:1, `a/b:1` is
    docker.io/a/b:1 (as Docker's reference parser normalizes them)."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return "docker.io/library/" + name
    if "." in first or ":" in first or first == "localhost":
        return name
    return "docker.io/" + name


def shared_libs(binary):
    """Absolute paths of the libraries and loader `ldd` lists (empty for a static binary)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


class Layer:
    """An uncompressed tar layer built in memory with fixed owners and mtimes."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.dirs = set()

    def _info(self, name, kind, mode, uid=0):
        info = tarfile.TarInfo(name.lstrip("/"))
        info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, 0
        return info

    def dir(self, path, mode=0o755, uid=0):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in self.dirs:
                self.dirs.add(p)
                last = i == len(parts)
                self.tar.addfile(self._info(p, tarfile.DIRTYPE, mode if last else 0o755, uid if last else 0))

    def file(self, path, data, mode=0o644):
        self.dir(os.path.dirname(path))
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def copy(self, src, dest):
        real = os.path.realpath(src)
        with open(real, "rb") as f:
            data = f.read()
        self.file(dest, data, os.stat(real).st_mode & 0o777)

    def symlink(self, path, target):
        self.dir(os.path.dirname(path))
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def blob(tar, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":")[1])
    info.size, info.mtime = len(data), 0
    tar.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--name", required=True, help="repository:tag, e.g. kafka-gateway:0.1.0")
    ap.add_argument("--expose", type=int, action="append", default=[])
    ap.add_argument("--extra", action="append", default=[], help="SRC=DEST file to add")
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    exe = "/usr/local/bin/" + os.path.basename(args.binary)
    layer = Layer()
    for d, mode, uid in [("/etc", 0o755, 0), ("/tmp", 0o1777, 0), ("/root", 0o700, 0),
                         ("/home/nonroot", 0o700, UID), ("/usr/local/bin", 0o755, 0)]:
        layer.dir(d, mode, uid)
    layer.file("/etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\n"
               b"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
               b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
    layer.file("/etc/group", b"root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")
    layer.file("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    if os.path.exists(CA_BUNDLE):
        layer.copy(CA_BUNDLE, CA_BUNDLE)
    for lib in shared_libs(args.binary):
        layer.copy(lib, lib)
    layer.copy(args.binary, exe)
    for spec in args.extra:
        src, dest = spec.split("=", 1)
        layer.copy(src, dest)
    layer_bytes = layer.bytes()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()

    labels = dict(kv.split("=", 1) for kv in args.label)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "User": f"{UID}:{UID}",
            "Entrypoint": [exe],
            "Env": [PATH_ENV, "SSL_CERT_FILE=" + CA_BUNDLE],
            "WorkingDir": "/home/nonroot",
            "ExposedPorts": {f"{p}/tcp": {} for p in args.expose},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scripts/e2e/oci_image.py"}],
    }
    tag = args.name.rsplit(":", 1)[1]
    full = normalized(args.name)
    with tarfile.open(args.out, "w") as tar:
        layer_desc = blob(tar, layer_bytes, "application/vnd.oci.image.layer.v1.tar")
        config_desc = blob(tar, json.dumps(config, sort_keys=True).encode(),
                           "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [layer_desc]}
        manifest_desc = blob(tar, json.dumps(manifest, sort_keys=True).encode(),
                             "application/vnd.oci.image.manifest.v1+json")
        manifest_desc["annotations"] = {"io.containerd.image.name": full,
                                        "org.opencontainers.image.ref.name": tag}
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [manifest_desc]}
        docker = [{"Config": "blobs/sha256/" + config_desc["digest"].split(":")[1],
                   "RepoTags": [args.name],
                   "Layers": ["blobs/sha256/" + layer_desc["digest"].split(":")[1]]}]
        for name, obj in [("oci-layout", {"imageLayoutVersion": "1.0.0"}), ("index.json", index),
                          ("manifest.json", docker)]:
            data = json.dumps(obj).encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    print(f"{args.out}: {args.name} {manifest_desc['digest']} ({len(layer_bytes) // 1024} KiB layer)")


if __name__ == "__main__":
    main()
