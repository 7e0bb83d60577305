"""All of biolake's settings in one typed place, read from the environment (prefix BIOLAKE_).

| variable | meaning | default |
|---|---|---|
| BIOLAKE_HOME | data directory (landing/, warehouse/, biolake.duckdb, reports/) | ./data |
| BIOLAKE_PSEUDONYM_SECRET | secret key of the patient pseudonym (HMAC); required outside demo mode | none |
| BIOLAKE_DEMO | 1 to allow the built-in demo secret (never for real data) | 0 |
| BIOLAKE_SEEDS_DIR | reference tables and lab mappings shipped with biolake | <repo>/seeds |
| BIOLAKE_MAPPINGS_DIR | operator's approved mappings, overriding the seeds; extra qualitative words in its qualitative/ folder, rejected work-queue suggestions in its rejected/ folder | <home>/mappings |
| BIOLAKE_LOINC_TABLE | the official LOINC table (Loinc.csv of the loinc.org download), completed by the shipped subset; unset: the subset alone | none |
| BIOLAKE_LOINC_FR_TABLE | its French linguistic variant (frFR...LinguisticVariant.csv), optional | none |
| BIOLAKE_CHUNK_ROWS | rows per parsing chunk (memory bound) | 500000 |
| BIOLAKE_PREFECT_HOME | where the embedded Prefect keeps its database | <home>/prefect |
| BIOLAKE_WORKERS | batches of files processed at once in one run (threads) | CPUs, at most 4 |
| BIOLAKE_BATCH_MB | landing files are processed in Prefect tasks of about this many MB of input | 40 |
| BIOLAKE_DUCKDB_MEMORY_LIMIT | memory DuckDB may use in a publication step before spilling to disk ("" = DuckDB's default, 80% of RAM) | 1GB |
| BIOLAKE_DASK_ADDRESS | a Dask scheduler (tcp://host:8786): per-file work runs on that cluster | none |
| BIOLAKE_LOCK_TIMEOUT | seconds a run waits for another run's warehouse lock | 600 |
| BIOLAKE_LANDING_SETTLE_SECONDS | a landing file modified less than this many seconds ago is left for the next run (still being written) | 0 |
| BIOLAKE_SUPPRESSION_THRESHOLD | largest count suppressed in published files | 10 |
| BIOLAKE_SUPPRESSION_MIN_COUNT | smallest count suppressed (zeros are published) | 1 |
| BIOLAKE_MDO_RULES | the notifiable-disease case rules table | <seeds>/mdo_rules.csv |
| BIOLAKE_COMPACT_MIN_FILES | small per-file partitions a table gathers before a run packs them into one Parquet file (0: never) | 32 |
| BIOLAKE_IDENTITY_RETENTION_DAYS | days after ingestion when raw identities are purged (`biolake purge`) | none |
| PREFECT_API_URL | a Prefect server to report to instead of the embedded one | unset |
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_SECRET = "biolake-demo-secret-not-for-real-data"


class SecretMissing(RuntimeError):
    pass


class SecretChanged(SecretMissing):
    """The secret differs from the one the warehouse's pseudonyms were made with."""


class WarehouseFormatError(RuntimeError):
    """The warehouse was written by an earlier biolake in a format this code cannot read as it is
    (flows/steps.py, ``check_upgradable``); the message tells the operator what to do."""


class WarehouseNeedsRebuild(WarehouseFormatError):
    """An earlier format no migration can bring to the current one: build a fresh home."""


class WarehouseNeedsUpgrade(WarehouseFormatError):
    """An earlier format that the next ``biolake run`` migrates, not migrated yet."""


MIN_SECRET_CHARS = 16  # an HMAC key a person could guess would let anyone recompute the pseudonyms


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BIOLAKE_", extra="ignore")

    home: Path = Field(default=Path("data"), description="data directory")
    pseudonym_secret: SecretStr | None = Field(default=None, description="HMAC secret of the pseudonym")
    demo: bool = Field(default=False, description="allow the built-in demo secret")
    seeds_dir: Path = Field(default=REPO_ROOT / "seeds", description="shipped reference tables and mappings")
    mappings_dir: Path | None = Field(default=None, description="operator's approved mappings")
    loinc_table: Path | None = Field(default=None, description="official Loinc.csv (licensed, from loinc.org); "
                                    "unset: the shipped subset alone")
    loinc_fr_table: Path | None = Field(default=None, description="French linguistic variant of the official table")
    chunk_rows: int = Field(default=500_000, ge=1000, description="rows per parsing chunk")
    prefect_home: Path | None = Field(default=None, description="embedded Prefect's database folder")
    workers: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)), ge=1, le=64,
                         description="batches of files processed at once (threads)")
    batch_mb: float = Field(default=40, gt=0, description="MB of landing files per processing task")
    duckdb_memory_limit: str = Field(default="1GB", pattern=r"^(\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB))?$",
                                     description="DuckDB memory_limit of the publication steps")
    dask_address: str | None = Field(default=None, description="Dask scheduler address for per-file work")
    lock_timeout: float = Field(default=600, ge=0, description="seconds to wait for the warehouse lock")
    landing_settle_seconds: float = Field(default=0, ge=0, description="a landing file modified more recently is "
                                          "left for the next run (a delivery still being written)")
    suppression_threshold: int = Field(default=10, ge=1, description="largest count suppressed in publications")
    suppression_min_count: int = Field(default=1, ge=1, description="smallest count suppressed")
    mdo_rules: Path | None = Field(default=None, description="MDO case rules table (default: seeds)")
    identity_retention_days: int | None = Field(default=None, ge=0, description="raw identity retention")
    lab_late_days: int = Field(default=7, ge=0, description="days without a file after which a lab that "
                               "delivered on at least 3 days is named late by the quality gate (0: never)")
    compact_min_files: int = Field(default=32, ge=0, description="small per-file partitions a table gathers "
                                   "before a run packs them (0: never)")

    @field_validator("loinc_table", "loinc_fr_table", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def home_abs(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def landing(self) -> Path:
        return self.home_abs / "landing"

    @property
    def operator_mappings(self) -> Path:
        return (self.mappings_dir or self.home_abs / "mappings").expanduser().resolve()

    @property
    def prefect_home_abs(self) -> Path:
        return (self.prefect_home or self.home_abs / "prefect").expanduser().resolve()

    def secret_bytes(self) -> bytes:
        if self.pseudonym_secret is not None and self.pseudonym_secret.get_secret_value():
            value = self.pseudonym_secret.get_secret_value()
            if len(value) < MIN_SECRET_CHARS or len(set(value)) < MIN_SECRET_CHARS // 2:
                raise SecretMissing(
                    f"BIOLAKE_PSEUDONYM_SECRET has {len(value)} characters, {len(set(value))} different: use at "
                    f"least {MIN_SECRET_CHARS} random ones (for example `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or the "
                    "pseudonyms can be recomputed by guessing the key.")
            return value.encode("utf-8")
        if self.demo:
            return DEMO_SECRET.encode("utf-8")
        raise SecretMissing(
            "BIOLAKE_PSEUDONYM_SECRET is not set: patient pseudonyms need a secret key held outside the "
            "repository (export BIOLAKE_PSEUDONYM_SECRET=...), or run the demo (`biolake demo`, BIOLAKE_DEMO=1) "
            "which uses a built-in secret fit only for synthetic data."
        )


def missing_warehouse(home: Path) -> str | None:
    """The error of a command that needs a warehouse, run on a home that has none, else None.

    A typo in --home must not look like success: QA saw `purge` report "purged 0 file(s)" every night
    on one (the real identities kept), and `analyst-db` build an empty warehouse there."""
    if (home / "warehouse").is_dir():
        return None
    if home.exists() and not home.is_dir():
        return f"{home} is a file, not a data home (check --home or BIOLAKE_HOME)"
    return f"no warehouse under {home}: run `biolake run` or `biolake demo` first (check --home or BIOLAKE_HOME)"
