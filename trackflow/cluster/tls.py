"""Per-run TLS certificates for Dask clusters on shared machines.

An open scheduler port on a shared cluster lets any other user run code as you, so trackflow's
SLURM clusters use mutual TLS by default: the scheduler, the workers and the client each present a
certificate signed by a certificate authority (CA) made for this run, and refuse peers without one.
``Security.temporary()`` keeps its certificate in memory, but worker jobs on other nodes need
files, so :func:`write_certificates` writes them to a run directory (on a shared file system) with
private files (mode 0600) in a private directory (mode 0700). The CA's private key is never
written: nobody can sign another certificate for the run afterwards. The files are made
with the ``openssl`` command.

``python -m trackflow.cluster.tls DIR`` writes the files from a shell
(``slurm/trackflow.sbatch``) and prints ``export DASK_DISTRIBUTED__COMM__...`` lines that make
every Dask process of the job (scheduler, workers, client) use them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from distributed.security import Security

from trackflow.errors import ConfigError

#: Name in the certificates; Dask does not check host names, the CA signature is what counts.
COMMON_NAME = "trackflow-dask"
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


@dataclass(frozen=True)
class TlsFiles:
    """Paths of one run's TLS material: the CA certificate and one certificate/key pair that the
    scheduler, the workers and the client all present."""

    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def in_directory(cls, directory: Path) -> TlsFiles:
        """The file names trackflow uses inside ``directory`` (existing or not)."""
        directory = Path(directory)
        return cls(directory, directory / "ca.pem", directory / "cert.pem", directory / "key.pem")

    def exist(self) -> bool:
        return all(p.is_file() for p in (self.ca_file, self.cert_file, self.key_file))

    def environment(self) -> dict[str, str]:
        """``DASK_...`` variables that make every Dask process started with them use these files
        and refuse plain connections (read by ``distributed.security.Security()``)."""
        env = {
            "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(self.ca_file),
        }
        for role in ("SCHEDULER", "WORKER", "CLIENT"):
            env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] = str(self.cert_file)
            env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] = str(self.key_file)
        return env


def _private_copy(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target``, mode 0600 from its creation (no window where it is not)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(source.read_bytes())
    target.chmod(PRIVATE_FILE_MODE)  # the file may have existed with a wider mode


def _openssl(*args: str, cwd: Path) -> None:
    """Run ``openssl`` with umask 077 so every file it creates is private from the start."""
    if shutil.which("openssl") is None:
        raise ConfigError("openssl: command not found; it is needed to make TLS certificates")
    done = subprocess.run(
        ["openssl", *args], cwd=cwd, umask=0o077, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        problem = " ".join(done.stderr.split())[-300:]
        raise ConfigError(f"openssl {args[0]} failed in {cwd}: {problem}")


def write_certificates(directory: Path, *, valid_days: int = 7) -> TlsFiles:
    """Create a CA and a certificate/key pair it signs, and write them to ``directory``.

    ``directory`` is created mode 0700 if needed; ``ca.pem``, ``cert.pem`` and ``key.pem`` are
    written mode 0600 (existing ones are replaced). ``valid_days`` bounds how long a leaked key is
    any use; it must exceed the walltime of the run. Returns the paths.

    Uses the ``openssl`` command (present on every Linux login node) rather than a Python
    package, so nothing beyond the standard library is needed; keys are EC P-256.
    """
    directory = Path(directory).absolute()
    directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    directory.chmod(PRIVATE_DIR_MODE)
    files = TlsFiles.in_directory(directory)
    days = str(max(1, int(valid_days)))
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    # The CA key lives only in a private scratch directory that is deleted at once.
    with tempfile.TemporaryDirectory(prefix="trackflow-ca-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "leaf.ext").write_text(
            "basicConstraints = critical, CA:FALSE\n"
            f"subjectAltName = DNS:{COMMON_NAME}\n"
            # every Dask process is a TLS server (it listens) and a TLS client (it connects)
            "extendedKeyUsage = serverAuth, clientAuth\n"
        )
        _openssl(
            "req",
            "-x509",
            *curve,
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            days,
            "-subj",
            f"/CN={COMMON_NAME} run CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            cwd=scratch,
        )
        _openssl(
            "req",
            "-new",
            *curve,
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            f"/CN={COMMON_NAME}",
            cwd=scratch,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            str(secrets.randbits(63)),
            "-days",
            days,
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
            cwd=scratch,
        )
        for name, target in (
            ("ca.pem", files.ca_file),
            ("cert.pem", files.cert_file),
            ("key.pem", files.key_file),
        ):
            _private_copy(scratch / name, target)
    return files


def check_private(files: TlsFiles) -> None:
    """Raise :class:`ConfigError` unless the files exist and only the owner can read the key."""
    for path in (files.ca_file, files.cert_file, files.key_file):
        if not path.is_file():
            raise ConfigError(f"{path}: TLS file missing (write it with write_certificates)")
    mode = stat.S_IMODE(files.key_file.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{files.key_file}: private key is mode {mode:o}; make it 0600")


def certificate_problem(cert_file: str | Path, ca_file: str | Path) -> str | None:
    """What is wrong with ``cert_file`` as seen from ``ca_file`` (``openssl verify``): e.g.
    ``certificate has expired (notAfter=...)`` or ``unable to get local issuer certificate``
    (signed by another CA); None when it verifies, or when it cannot be checked here."""
    if shutil.which("openssl") is None:
        return None
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_file), str(cert_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return None
    said = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error ")]
    # "error 10 at 0 depth lookup: certificate has expired"
    problem = said[0].split(":", 1)[-1].strip() if said else "does not verify"
    end = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate", "-in", str(cert_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if "expired" in problem and end.returncode == 0:
        problem += f" ({end.stdout.strip()})"
    return problem


def tls_security(files: TlsFiles) -> Security:
    """A ``Security`` for the scheduler, the workers and the client of one run: every connection
    encrypted, every peer must present a certificate signed by the run's CA."""
    check_private(files)
    cert, key = str(files.cert_file), str(files.key_file)
    return Security(
        require_encryption=True,
        tls_ca_file=str(files.ca_file),
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
        tls_client_cert=cert,
        tls_client_key=key,
    )


def remove_certificates(files: TlsFiles) -> None:
    """Delete the run's TLS files (and the directory if it is then empty)."""
    for path in (files.key_file, files.cert_file, files.ca_file):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty or already gone: leave it
        files.directory.rmdir()


def main(argv: list[str] | None = None) -> int:
    """``python -m trackflow.cluster.tls DIR``: write certificates, print shell exports."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m trackflow.cluster.tls DIR", file=sys.stderr)
        return 2
    files = write_certificates(Path(args[0]))
    for name, value in files.environment().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
