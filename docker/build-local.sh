#!/usr/bin/env bash
# Build the CPU component image (and the local step image on top) for real on a machine with no Docker engine and no registry access (`make images`).
#
# 1. a Debian bookworm rootfs (debootstrap, minbase + Python 3.11) imported with `podman import` as the base
#    image, passed to docker/Dockerfile.cpu through BASE_IMAGE (no base image can be pulled here);
# 2. a wheelhouse built on the host (`pip wheel`, torch from the CPU wheel on this machine) mounted on /wheels, so
#    the build runs without network access from inside the container;
# 3. podman with the runc runtime, chroot isolation, low ulimits and the vfs storage driver (what works in an
#    unprivileged container without overlayfs or user namespaces).
# Needs root, podman, buildah and debootstrap (apt-get install podman buildah debootstrap runc).
# Everything lives under $HISTOSYNTH_IMAGE_WORK (default .histosynth/images); reruns reuse every cached step.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${HISTOSYNTH_IMAGE_WORK:-$PWD/.histosynth/images}
PYTHON=${PYTHON:-.venv/bin/python}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=${BASE_IMAGE:-localhost/debian-$SUITE-python:12}
TAG=${IMAGE_TAG:-localhost/histosynth-python-cpu:0.1.0}
TORCH=${TORCH_REQUIREMENT:-torch==2.13.0+cpu}
LOCAL_TAG=${LOCAL_IMAGE_TAG:-localhost/histosynth-python-local:0.1.0}
mkdir -p "$WORK/conf" "$WORK/wheels"

cat > "$WORK/conf/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat > "$WORK/conf/storage.conf" <<CONF
[storage]
driver = "vfs"
runroot = "$WORK/storage/run"
graphroot = "$WORK/storage/graph"
CONF
export CONTAINERS_CONF="$WORK/conf/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/conf/storage.conf"

for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found; fix: apt-get install podman buildah debootstrap runc" >&2; exit 2; }
done

# 1-3: the CPU image
build_cpu_image() {
  t0=$(date +%s)
  if ! podman image exists "$BASE"; then
    if [ ! -x "$WORK/rootfs/usr/bin/python3.11" ]; then
      rm -rf "$WORK/rootfs"
      debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-venv,ca-certificates,libgomp1 \
        "$SUITE" "$WORK/rootfs" "$MIRROR"
    fi
    tar -C "$WORK/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE"
  fi
  t1=$(date +%s)

  "$PYTHON" docker/deps.py --extras kfp --exclude torch,torchvision > "$WORK/requirements.txt"
  stamp="$WORK/wheels/.stamp-$( (cat "$WORK/requirements.txt"; echo "$TORCH") | sha256sum | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    "$PYTHON" -m pip wheel -q -w "$WORK/wheels" "$TORCH" -r "$WORK/requirements.txt" setuptools wheel
    touch "$stamp"
  fi
  t2=$(date +%s)

  # file:///wheels/no-index does not exist: pip ignores it and installs from --find-links /wheels only.
  podman build --format docker --isolation chroot -f docker/Dockerfile.cpu -t "$TAG" \
    --build-arg BASE_IMAGE="$BASE" --build-arg TORCH_REQUIREMENT="$TORCH" \
    --build-arg PIP_INDEX_URL=file:///wheels/no-index --build-arg PIP_EXTRA_INDEX_URL=file:///wheels/no-index \
    --volume "$WORK/wheels:/wheels:ro" .
  t3=$(date +%s)
  echo "built $TAG: base $((t1 - t0)) s, wheelhouse $((t2 - t1)) s, image $((t3 - t2)) s, total $((t3 - t0)) s"
  podman image inspect "$TAG" --format '{{.Size}}' | awk '{printf "size %.0f MB\n", $1 / 1e6}'
}

# LOCAL_ONLY=1: only step 4, on the CPU image built before
if [ "${LOCAL_ONLY:-}" != 1 ] || ! podman image exists "$TAG"; then
  build_cpu_image
fi
t3=$(date +%s)

# 4. the image `histosynth pipeline run --runner docker` runs every step in: the CPU image with the working tree's
#    code in one small layer on top (a code change rebuilds only that layer, not the dependency layer).
podman build --format docker --isolation chroot -t "$LOCAL_TAG" --volume "$WORK/wheels:/wheels:ro" -f - . <<CONTAINERFILE
FROM $TAG
USER 0
COPY pyproject.toml README.md /tmp/histosynth/
COPY src /tmp/histosynth/src
RUN pip install --no-index --no-deps --find-links /wheels /tmp/histosynth && rm -rf /tmp/histosynth && python -c "import histosynth.stages"
USER 1000:1000
CONTAINERFILE
echo "built $LOCAL_TAG: $(($(date +%s) - t3)) s"
