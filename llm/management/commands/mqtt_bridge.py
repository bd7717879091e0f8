"""Answer chat requests that devices publish to the MQTT broker."""

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
        "<MQTT_TOPIC_PREFIX>/<device_id>/request on <MQTT_TOPIC_PREFIX>/<device_id>/response."
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
            mqtt.BrokerAddress.parse(url)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Bridging {url} topics {prefix}/+/request → {prefix}/+/response (Ctrl-C stops)"
        )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(mqtt.serve(url, prefix))
