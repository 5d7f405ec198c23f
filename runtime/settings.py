"""One settings object, from ``LINEAGE_*`` environment variables or a TOML file.

With nothing configured the embedded mode runs (a local SQLite log and projection, alerts on
stdout) and a pseudonymization key is created once under ``home``. As soon as Kafka or Neo4j is
configured we are in production, and a missing key is an error, never a silent default.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from lineage.errors import ConfigurationError

#: Kafka topic names, named once (README documents them).
EVENTS_TOPIC = "lineage.events"
ALERTS_TOPIC = "lineage.alerts"
DEADLETTER_TOPIC = "lineage.events.deadletter"
INCIDENTS_TOPIC = "lineage.incidents"  # compacted, keyed by incident id
CHANGES_TOPIC = "lineage.changes"  # what each partition's units changed, for the served view


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINEAGE_", extra="forbid")

    home: Path = Field(default=Path(".lineage"), description="embedded state directory")
    key: SecretStr | None = Field(default=None, description="HMAC key (>= 16 bytes)")
    key_file: Path | None = None
    default_region: str | None = Field(default=None, description="phone region, e.g. US")
    policy_file: Path | None = None
    purposes_file: Path | None = None

    lock_wait_seconds: float = Field(
        default=30.0, ge=0, description="how long a writer waits for another to finish"
    )

    incident_quiet_days: float = Field(
        default=30.0, gt=0, description="an incident with no violation for this long resolves"
    )
    incident_interval_seconds: float = Field(
        default=60.0, ge=0, description="at most one update per incident per interval"
    )
    stdout_send: Literal["alerts", "incidents", "both"] = Field(
        default="both",
        description="what embedded `lineage ingest` prints as it records: alerts, incident "
        "messages (bounded in rate, as on the incidents topic) or both",
    )

    store: Literal["sqlite", "neo4j"] | None = None
    log: Literal["local", "kafka"] | None = None

    kafka_bootstrap: str | None = None
    events_topic: str = EVENTS_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    deadletter_topic: str = DEADLETTER_TOPIC
    incidents_topic: str = INCIDENTS_TOPIC
    changes_topic: str = CHANGES_TOPIC
    topic_partitions: int = 4
    event_routing: Literal["keyed", "partitioned"] = Field(
        default="keyed",
        description="how producers place events: by key (for `lineage worker`), or split and "
        "broadcast per partition (for `lineage processor`, docs/scale.md)",
    )
    state_dir: Path = Field(
        default=Path(".lineage/partitions"), description="a processor's partitions' state"
    )

    neo4j_uri: str | None = None
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr | None = None
    neo4j_database: str = "neo4j"

    @property
    def production(self) -> bool:
        return bool(
            self.kafka_bootstrap or self.neo4j_uri or self.store == "neo4j" or self.log == "kafka"
        )

    @property
    def store_kind(self) -> Literal["sqlite", "neo4j"]:
        return self.store or ("neo4j" if self.neo4j_uri else "sqlite")

    @property
    def log_kind(self) -> Literal["local", "kafka"]:
        return self.log or ("kafka" if self.kafka_bootstrap else "local")

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap:
            raise ConfigurationError("LINEAGE_KAFKA_BOOTSTRAP is not set (e.g. 127.0.0.1:19092)")
        return self.kafka_bootstrap

    def require_neo4j(self) -> tuple[str, str, str]:
        if not self.neo4j_uri:
            raise ConfigurationError("LINEAGE_NEO4J_URI is not set (e.g. bolt://127.0.0.1:17687)")
        if self.neo4j_password is None:
            raise ConfigurationError("LINEAGE_NEO4J_PASSWORD is not set")
        return self.neo4j_uri, self.neo4j_user, self.neo4j_password.get_secret_value()

    def pseudonymization_key(self) -> bytes:
        if self.key is not None:
            return self.key.get_secret_value().encode()
        if self.key_file is not None:
            return self.key_file.read_bytes().strip()
        if self.production:
            raise ConfigurationError(
                "production mode needs a pseudonymization key: set LINEAGE_KEY or "
                "LINEAGE_KEY_FILE (the same on every producer and worker)"
            )
        return _embedded_key(self.home)


def _embedded_key(home: Path) -> bytes:
    """Created once per embedded home, readable only by its owner."""
    path = home / "key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def load_settings(**overrides: Any) -> Settings:
    """Environment first; ``LINEAGE_CONFIG`` names a TOML file whose keys fill the gaps."""
    file_values: dict[str, Any] = {}
    config_path = os.environ.get("LINEAGE_CONFIG")
    if config_path:
        try:
            file_values = tomllib.loads(Path(config_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read LINEAGE_CONFIG={config_path}: {exc}") from None
    try:
        env_settings = Settings(**overrides)
        explicit = env_settings.model_fields_set
        merged = {**file_values, **{k: getattr(env_settings, k) for k in explicit}}
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from None
