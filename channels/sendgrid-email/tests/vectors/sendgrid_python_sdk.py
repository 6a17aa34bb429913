"""Writes sendgrid-event-webhook.json: Event Webhook deliveries and their ECDSA P-256
signatures, each checked with SendGrid's own Python SDK (`sendgrid` on PyPI,
`sendgrid.helpers.eventwebhook.EventWebhook.verify_signature`), for the channel's tests.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install sendgrid==6.12.5 cryptography
    /tmp/v/bin/python channels/sendgrid-email/tests/vectors/sendgrid_python_sdk.py

The first case is the SDK's own published vector (sendgrid-python, test/unit/
test_eventwebhook.py). The others are signed here with a fixed test key (the private half is
written too, so the mock can sign the same way) over timestamp + body, as SendGrid signs.
"""
import base64
import json
import pathlib

import sendgrid
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

PUBLISHED = {
    "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==",
    "signature": "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=",
    "timestamp": "1600112502",
    "body": json.dumps([{
        "email": "hello@world.com", "event": "dropped", "reason": "Bounced Address",
        "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
        "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
        "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
        "timestamp": 1600112492}], sort_keys=True, separators=(",", ":")) + "\r\n",
}

# A fixed test key (never a real one): the scalar 0x1d...1d.
PRIVATE = ec.derive_private_key(int("1d" * 32, 16), ec.SECP256R1())

BODIES = [
    ("1765000000", [
        {"email": "pablo@example.com", "event": "processed", "timestamp": 1764999990,
         "sg_event_id": "cHJvY2Vzc2VkLTE", "sg_message_id": "14c5d75ce93.filterdrecv-1.0",
         "flow_correlation_id": "order-4711/2/1"},
        {"email": "pablo@example.com", "event": "delivered", "timestamp": 1764999995,
         "sg_event_id": "ZGVsaXZlcmVkLTE", "sg_message_id": "14c5d75ce93.filterdrecv-1.0",
         "response": "250 OK", "flow_correlation_id": "order-4711/2/1"}]),
    ("1765000100", [
        {"email": "zoë@exämple.com", "event": "bounce", "type": "blocked", "status": "5.7.1",
         "reason": "550 5.7.1 blocked — spam", "timestamp": 1765000090,
         "sg_event_id": "Ym91bmNlLTE", "sg_message_id": "X9.filter-2", "new_field_2026": {"x": 1}}]),
]


def main():
    public_der = PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_b64 = base64.b64encode(public_der).decode()
    private_der = PRIVATE.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    cases = [dict(PUBLISHED, source="sendgrid-python test/unit/test_eventwebhook.py")]
    for timestamp, events in BODIES:
        body = json.dumps(events, ensure_ascii=False, separators=(",", ":")) + "\r\n"
        signature = PRIVATE.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256()))
        cases.append({"public_key": public_b64, "timestamp": timestamp, "body": body,
                      "signature": base64.b64encode(signature).decode(),
                      "source": "signed here with the test key"})
    for case in cases:
        ew = EventWebhook()
        key = ew.convert_public_key_to_ecdsa(case["public_key"])
        case["sdk_validates"] = ew.verify_signature(case["body"], case["signature"], case["timestamp"], key)
        assert case["sdk_validates"], case
    doc = {"sdk": f"sendgrid (PyPI) {sendgrid.__version__}, EventWebhook.verify_signature",
           "test_private_key_pkcs8": base64.b64encode(private_der).decode(),
           "cases": cases}
    path = pathlib.Path(__file__).with_name("sendgrid-event-webhook.json")
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
