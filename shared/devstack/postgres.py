"""PostgreSQL for the local stack and the tests: the Debian binaries, a cluster of our own,
started as the ``postgres`` user directly (never through su/runuser: a killed wrapper
would orphan the postmaster), with the role and database of DESIGN.md.

Authentication is the services' own: password (SCRAM) over TCP, trust only on the private
unix socket that this module uses to create the role and database.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from eventpipe.devstack.parts import Part, run
from eventpipe.devstack.procs import StackError

ROLE = "eventpipe"  # development credentials: local stack and tests only
DATABASE = "eventpipe"


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not found:
        raise StackError(
            "PostgreSQL binaries not found under /usr/lib/postgresql: run `scripts/stack.sh install`"
        )
    return found[-1]


def pg_home(local: Path) -> Path:
    """``local/pg``; when the postgres user cannot reach it (a checkout under /root, mode
    700), a directory under /var/lib/eventpipe named after the checkout instead."""
    home = local / "pg"
    home.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return home
    shutil.chown(home, "postgres")
    try:
        run(["test", "-w", str(home)], user="postgres")
        return home
    except StackError:
        home = Path("/var/lib/eventpipe") / hashlib.md5(str(local).encode()).hexdigest()[:12]
        home.mkdir(parents=True, exist_ok=True)
        shutil.chown(home, "postgres")
        home.chmod(0o700)
        return home


@dataclass
class Postgres(Part):
    home: Path
    port: int
    max_connections: int = 200
    settings: tuple[str, ...] = ()  # further -c name=value
    fast_initdb: bool = False  # --no-sync: for throw-away test clusters
    name: ClassVar[str] = "postgres"
    user: ClassVar[str | None] = "postgres"
    stop_signal: ClassVar[int] = signal.SIGINT  # "fast" shutdown, what pg_ctl -m fast sends

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def sock(self) -> Path:
        return self.home / "sock"

    @property
    def dsn(self) -> str:
        return f"postgresql://{ROLE}:{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def postmaster_pid(self) -> int | None:
        from eventpipe.devstack.procs import read_pid

        return read_pid(self.data / "postmaster.pid")

    def prepare(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.home, self.data, self.sock):
                shutil.chown(path, "postgres")
        self.data.chmod(0o700)
        if not (self.data / "PG_VERSION").exists():
            initdb = [str(pg_bin() / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                      "--auth-local=trust", "--auth-host=scram-sha-256"]  # fmt: skip
            run([*initdb, *(["--no-sync"] if self.fast_initdb else [])], user="postgres")

    def command(self) -> list[str]:
        options = [
            "listen_addresses=127.0.0.1", f"port={self.port}", f"unix_socket_directories={self.sock}",
            f"max_connections={self.max_connections}", *self.settings,
        ]  # fmt: skip
        return [str(pg_bin() / "postgres"), "-D", str(self.data), *(a for o in options for a in ("-c", o))]

    def signature(self) -> str:
        return f"*postgres -D {self.data}*"

    def _connect(self) -> Any:
        """The superuser's session over the private socket (trust), autocommit: CREATE
        DATABASE cannot run in a transaction."""
        from eventpipe.loader.connection import open_connection

        return open_connection(
            "", "eventpipe-devstack", autocommit=True, host=str(self.sock), port=self.port, user="postgres",
            dbname="postgres",
        )  # fmt: skip

    def healthy(self) -> bool:
        from eventpipe.errors import WarehouseError
        from eventpipe.loader.connection import translated

        try:
            with translated("postgres not ready"):
                self._connect().close()
            return True
        except WarehouseError:  # starting up, or not listening yet
            return False

    def after_start(self) -> None:
        """The role and database of DESIGN.md, created once."""
        from eventpipe.loader.dialects.local_cluster import (
            DATABASE_EXISTS,
            ROLE_EXISTS,
            create_database,
            create_role,
        )

        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(ROLE_EXISTS, (ROLE,))
                if cur.fetchone() is None:
                    cur.execute(create_role(ROLE), (ROLE,))
                cur.execute(DATABASE_EXISTS, (DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(create_database(DATABASE, ROLE))
        finally:
            conn.close()
