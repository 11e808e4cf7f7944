"""A Celery broker in PostgreSQL that keeps a message until its task is acknowledged.

kombu's SQLAlchemy transport marks a message invisible when a worker fetches it and never looks
at it again: a worker killed mid-task loses the message, and delivered rows pile up forever.
This transport deletes a row on acknowledgement, makes it visible again on reject(requeue) and
at a worker's orderly shutdown, and gives any row fetched longer than `visibility_timeout` ago
back to the queue (the worker holding it died). With `acks_late` and `reject_on_worker_lost`,
a fetched message is therefore lost neither by a dead pool process nor by a dead worker.

Used as `faceweb+postgresql+psycopg://...` (faceweb/celery.py registers the name); settings.py
builds the URL from the database settings, so the queue lives in the app's own database and
needs no server of its own.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqla
from kombu.transport import virtual
from sqlalchemy import create_engine, update

logger = logging.getLogger(__name__)

DEFAULT_VISIBILITY_TIMEOUT = 3600.0
# How often a consumer looks for rows whose worker died.
RESTORE_EVERY = 30.0
ENGINE_OPTIONS = frozenset({"pool_pre_ping", "pool_size", "max_overflow", "pool_recycle", "echo"})


def _now() -> datetime.datetime:
    # The kombu table's timestamp column is naive local time (datetime.now).
    return datetime.datetime.now()


class QoS(virtual.QoS):
    """Acknowledging deletes the row, rejecting with requeue makes it visible again. Neither
    raises when the database is away: the change waits in the channel (a message that stayed
    unacknowledged would keep the worker's prefetch slot and stop it taking new ones)."""

    def ack(self, delivery_tag: str) -> None:
        self.channel._forget(delivery_tag, delete=True)
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self.channel._forget(delivery_tag, delete=not requeue)
        self._quick_ack(delivery_tag)

    def restore_unacked(self) -> list:
        # An orderly shutdown hands every unacknowledged message back, in place.
        self._flush()
        while self._delivered:
            tag, _message = self._delivered.popitem()
            self.channel._forget(tag, delete=False)
        return []


class Channel(kombu_sqla.Channel):
    QoS = QoS

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        options = connection.client.transport_options
        self.visibility_timeout = float(
            options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
        )
        self._rows: dict[str, int] = {}
        self._pending: list[tuple[int, bool]] = []
        self._last_restore = 0.0

    def _engine_from_config(self) -> Any:
        # Only engine settings reach SQLAlchemy (the base class passes every transport option,
        # including kombu's own polling_interval and ours).
        options = self.connection.client.transport_options
        engine_options = {k: v for k, v in options.items() if k in ENGINE_OPTIONS}
        return create_engine(self.connection.client.hostname, **engine_options)

    def _restore_expired(self, queue_id: int) -> None:
        if time.monotonic() - self._last_restore < RESTORE_EVERY:
            return
        self._last_restore = time.monotonic()
        cutoff = _now() - datetime.timedelta(seconds=self.visibility_timeout)
        message = self.message_cls
        self.session.execute(
            update(message)
            .where(message.queue_id == queue_id)
            .where(message.visible == False)  # noqa: E712 (SQL, not Python)
            .where(message.sent_at < cutoff)
            .values(visible=True)
            .execution_options(synchronize_session=False)
        )
        self.session.commit()

    def _get(self, queue: str, timeout: float | None = None) -> dict:
        self._flush_pending()
        message = self.message_cls
        try:
            obj = self._get_or_create(queue)
            self._restore_expired(obj.id)
            row = (
                self.session.query(message)
                .with_for_update(skip_locked=True)
                .filter(message.queue_id == obj.id)
                .filter(message.visible != False)  # noqa: E712
                .order_by(message.sent_at, message.id)
                .limit(1)
                .first()
            )
            if row is None:
                raise kombu_sqla.Empty()
            row.visible = False  # the timestamp becomes the delivery time (onupdate)
            payload = kombu_sqla.loads(kombu_sqla.bytes_to_str(row.payload))
            self.session.commit()
        except BaseException:
            self.session.rollback()
            raise
        tag = payload.get("properties", {}).get("delivery_tag")
        if tag:
            self._rows[tag] = row.id
        return payload

    def _forget(self, delivery_tag: str, *, delete: bool) -> None:
        """Acknowledged (delete) or handed back (visible again) by the worker."""
        row_id = self._rows.pop(delivery_tag, None)
        if row_id is not None:
            self._pending.append((row_id, delete))
            self._flush_pending()

    def _flush_pending(self) -> None:
        """Apply the acks and hand-backs the database could not take yet, oldest first. A row
        whose change is lost with its channel comes back after the visibility timeout (and its
        task, run twice, finds nothing to do)."""
        message = self.message_cls
        while self._pending:
            row_id, delete = self._pending[0]
            try:
                query = self.session.query(message).filter(message.id == row_id)
                if delete:
                    query.delete(synchronize_session=False)
                else:
                    query.update({message.visible: True}, synchronize_session=False)
                self.session.commit()
            except Exception as exc:
                self.session.rollback()
                logger.warning("broker: message %s waits for the database (%s)", row_id, exc)
                return
            self._pending.pop(0)

    def _restore(self, message: Any) -> None:
        tag = message.delivery_tag
        if tag in self._rows:
            self._forget(tag, delete=False)
        else:
            super()._restore(message)


class Transport(kombu_sqla.Transport):
    Channel = Channel


def dispose_engines() -> None:
    """Close this process's pooled broker connections (tests do, before dropping a database)."""
    for engine, _session in kombu_sqla.Channel._engines.values():
        engine.dispose()
    kombu_sqla.Channel._engines.clear()
