from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class NotifyConsumer(AsyncJsonWebsocketConsumer):
    """all on connect, user_<id> on connect, note_<id> on open; send_notify by type."""

    groups = ["all"]

    async def connect(self):
        user = parse_qs(self.scope["query_string"].decode()).get("user", ["0"])[0]
        self.user_group = f"user_{user}"
        self.notes = set()
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.accept()

    async def receive_json(self, content, **kwargs):
        group = f"note_{content.get('note')}"
        if content.get("action") == "open_note":
            self.notes.add(group)
            await self.channel_layer.group_add(group, self.channel_name)
        elif content.get("action") == "close_note":
            self.notes.discard(group)
            await self.channel_layer.group_discard(group, self.channel_name)

    async def send_notify(self, event):
        await self.send_json({"type": "notify", "data": event["data"]})

    async def disconnect(self, code):
        for group in (self.user_group, *self.notes):
            await self.channel_layer.group_discard(group, self.channel_name)
