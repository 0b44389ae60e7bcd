"""The environment cup4soil's tasks need on Dask workers: GDAL settings and credentials.

It is captured once, on the client, as a frozen, picklable :class:`Environment`
(:meth:`Environment.capture`), as odc-loader captures its GDAL configuration into a load
(``RioDriver.capture_env``) and restores it around every read (``restore_env``):

- **Per task** -- :meth:`Environment.restore` applies the GDAL configuration options
  (``GDAL_*``, ``CPL_*``, ``VSI_*``) thread-locally with ``rasterio.Env`` for the duration
  of one task. Nothing in ``os.environ`` changes, so concurrent tasks of other clients on a
  shared worker are unaffected. A task function that reads with GDAL takes the environment
  as an argument (it travels with the graph, so it also reaches workers that never saw a
  plugin) and runs inside ``with env.restore():``. A cube planned inside
  ``with env.restore():`` (odc-stac engine) captures these options into its read plan,
  and odc-loader restores them around every read on the workers.
- **Per worker process** -- the :class:`WorkerEnvironment` plugin that :func:`connect
  <cup4soil.runtime.cluster.connect>` registers. It edits ``os.environ`` and stays only for
  what nothing else reaches:

  * variables libraries read from the process environment only: the Planetary Computer
    token service (``PC_SDK_*``, used by :mod:`cup4soil.sources.signing` when a worker
    re-signs an expiring URL), cup4soil's own settings (``CUP4SOIL_*``), and storage
    credentials (``AWS_*``, ``AZURE_*``, ``GS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``) for
    botocore/s3fs, adlfs and gcsfs clients opened on workers without ``storage_options``;
  * the GDAL options as process defaults for the cube's read tasks: odc-loader and
    stackstac restore their own captured options per read and fall back to the process
    environment for everything else (the cube stage may not import the runtime, so it
    cannot restore this environment itself);
  * ``GDAL_CACHEMAX``, the size of GDAL's block cache, which is one per process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["DEFAULT_WORKER_ENV", "Environment", "WorkerEnvironment", "worker_environment"]

#: GDAL settings for COG reading over HTTP/S3 (set on every worker unless already given).
DEFAULT_WORKER_ENV: dict[str, str] = {
    # a COG needs no sidecar files: do not list the "directory" of every href
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.vrt",
    # retries and time-outs as the cube's readers set them (cube/readers.py): 3 retries from
    # 0.5 s, doubling; a transfer slower than 1 byte/s for 30 s is a time-out
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_CONNECTTIMEOUT": "15",
    "GDAL_HTTP_LOW_SPEED_TIME": "30",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_VERSION": "2",
    "VSI_CACHE": "TRUE",
    "GDAL_CACHEMAX": "256",
}

# Forwarded from the client's environment when set: storage and signing credentials, ...
_CREDENTIALS = re.compile(r"^(AWS_|AZURE_|GS_|GOOGLE_APPLICATION_CREDENTIALS$|PC_SDK_)")
# ... and settings.
_FORWARD = re.compile(r"^(CUP4SOIL_|GDAL_|CPL_|VSI_)")
# GDAL configuration options: rasterio.Env sets them per thread.
_GDAL = re.compile(r"^(GDAL_|CPL_|VSI_)")
# ... except the size of GDAL's block cache, shared by the whole process: the plugin's part.
_PROCESS_WIDE = frozenset({"GDAL_CACHEMAX"})


def worker_environment(extra: Mapping[str, str] | None = None, *,
                       credentials: bool = True) -> dict[str, str]:
    """The environment variables workers get: :data:`DEFAULT_WORKER_ENV`, then matching
    variables of this process (``GDAL_*``, ``CPL_*``, ``VSI_*``, ``CUP4SOIL_*`` and, with
    ``credentials``, ``AWS_*``, ``AZURE_*``, ``GS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``,
    ``PC_SDK_*``), then ``extra`` (always: the user asked for it)."""
    env = dict(DEFAULT_WORKER_ENV)
    env.update({k: v for k, v in os.environ.items()
                if _FORWARD.match(k) or (credentials and _CREDENTIALS.match(k))})
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    return env


@dataclass(frozen=True)
class Environment:
    """GDAL options and credentials captured on the client; restored on workers.

    Frozen and picklable: it travels inside task arguments or a worker plugin. Its
    ``repr`` lists names only, never values (they may be credentials).

    Attributes
    ----------
    variables : tuple of (str, str)
        Name and value of every variable, sorted by name.
    """

    variables: tuple[tuple[str, str], ...] = ()

    @classmethod
    def capture(cls, extra: Mapping[str, str] | None = None, *,
                credentials: bool = True) -> Environment:
        """This process's environment for workers (see :func:`worker_environment`)."""
        return cls(tuple(sorted(worker_environment(extra, credentials=credentials).items())))

    @classmethod
    def of(cls, env: Mapping[str, str]) -> Environment:
        """Exactly the variables of ``env``."""
        return cls(tuple(sorted((str(k), str(v)) for k, v in env.items())))

    @property
    def names(self) -> tuple[str, ...]:
        """The variables' names."""
        return tuple(k for k, _ in self.variables)

    @property
    def gdal_options(self) -> dict[str, str]:
        """GDAL configuration options (``GDAL_*``, ``CPL_*``, ``VSI_*``) a task can set for
        itself: all but ``GDAL_CACHEMAX``, the size of the process's block cache."""
        return {k: v for k, v in self.variables if _GDAL.match(k) and k not in _PROCESS_WIDE}

    def as_dict(self) -> dict[str, str]:
        """Every variable, name to value."""
        return dict(self.variables)

    @contextmanager
    def restore(self) -> Iterator[None]:
        """Apply the GDAL options to this thread for the duration of a task.

        ``rasterio.Env`` keeps them thread-local (as odc-loader's ``restore_env``);
        ``os.environ`` is not touched.
        """
        import rasterio

        with rasterio.Env(**self.gdal_options):
            yield

    def export(self) -> None:
        """Set every variable in ``os.environ`` (process-wide: the worker plugin only)."""
        os.environ.update(self.variables)

    def __repr__(self) -> str:  # never the values: they may be credentials
        return f"Environment({list(self.names)})"


class WorkerEnvironment(WorkerPlugin):
    """Worker plugin that sets environment variables on every worker, now and later.

    ``distributed`` runs a registered plugin's ``setup`` on each existing worker and on
    every worker that joins afterwards, so adaptive clusters stay configured. It edits
    ``os.environ`` only for what per-task restoring cannot reach (see the module's
    documentation).

    Parameters
    ----------
    env : Environment or dict
        What to set, e.g. ``Environment.capture(extra)``.
    """

    name = "cup4soil-environment"

    def __init__(self, env: Environment | Mapping[str, str]) -> None:
        self.environment = env if isinstance(env, Environment) else Environment.of(env)

    @property
    def env(self) -> dict[str, str]:
        """The variables set on workers, name to value."""
        return self.environment.as_dict()

    def setup(self, worker: Any) -> None:
        self.environment.export()

    def teardown(self, worker: Any) -> None:
        pass

    def __repr__(self) -> str:  # never the values: they may be credentials
        return f"WorkerEnvironment({sorted(self.environment.names)})"
