"""Answer chat requests that devices publish to the MQTT broker (docs/mqtt.md)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from llm import mqtt


class Command(BaseCommand):
    help = (
        "Connect to MQTT_URL and answer requests published to "
        "<MQTT_TOPIC_PREFIX>/<username>/<device_id>/request on "
        "<MQTT_TOPIC_PREFIX>/<username>/<device_id>/response."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default=None, help="Broker URL (default: MQTT_URL)")
        parser.add_argument(
            "--prefix", default=None, help="Topic prefix (default: MQTT_TOPIC_PREFIX)"
        )

    def handle(self, *args: Any, url: str | None, prefix: str | None, **options: Any) -> None:
        url = url or settings.MQTT_URL
        prefix = prefix or settings.MQTT_TOPIC_PREFIX
        try:
            address = mqtt.BrokerAddress.parse(url)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        # Never the URL itself: it carries the bridge's broker password.
        self.stdout.write(
            f"Bridging {address.display()} topics {prefix}/+/+/request → "
            f"{prefix}/+/+/response (Ctrl-C stops)"
        )
        if address.username is None:
            self.stderr.write(
                "MQTT_URL has no user name: unless this broker refuses anonymous clients and "
                "has the ACL in docs/mqtt.md, anyone who reaches it can ask as any user and "
                "read every answer."
            )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                mqtt.serve(
                    url,
                    prefix,
                    ca_file=settings.MQTT_CA_FILE,
                    max_concurrent=settings.MQTT_MAX_CONCURRENT,
                    max_per_user=settings.MQTT_MAX_CONCURRENT_PER_USER,
                )
            )
