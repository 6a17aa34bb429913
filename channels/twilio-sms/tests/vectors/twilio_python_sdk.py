"""Writes twilio-python-sdk.json: X-Twilio-Signature values made by Twilio's own Python SDK
(`twilio` on PyPI, `twilio.request_validator.RequestValidator`), for the channel's tests.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install twilio==9.13.0
    /tmp/v/bin/python channels/twilio-sms/tests/vectors/twilio_python_sdk.py

Each case: the auth token, the URL Twilio called, the form parameters (or a JSON body, signed
through `bodySHA256` in the URL), the signature the SDK computes, and whether the SDK's own
`validate` accepts it as received (with the URL's port form Twilio may have used).
"""
import json
import pathlib
import twilio
from twilio.request_validator import RequestValidator

CASES = [
    # Twilio's documented example (its security guide): token 12345.
    ("12345", "https://mycompany.com/myapp.php?foo=1&bar=2",
     {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310", "Digits": "1234",
      "From": "+14158675310", "To": "+18005551212"}, None),
    # A status callback with the correlation id in its query.
    ("mock-twilio-auth-token", "https://hooks.example.com/webhooks/sms?correlation_id=order-4711%3Awhatsapp%3A1",
     {"SmsSid": "SM0123456789abcdef0123456789abcdef", "SmsStatus": "undelivered",
      "MessageStatus": "undelivered", "To": "+15550100030",
      "MessageSid": "SM0123456789abcdef0123456789abcdef",
      "AccountSid": "AC0a1b2c3d4e5f60718293a4b5c6d7e8f9", "From": "+15005550006",
      "ApiVersion": "2010-04-01", "ErrorCode": "30003"}, None),
    # An inbound STOP with non-ASCII text elsewhere and a parameter Twilio added lately.
    ("f00dbabe", "https://hooks.example.com:443/webhooks/sms",
     {"Body": "STOP", "From": "+15550100031", "To": "+15005550006",
      "MessageSid": "SMaaaabbbbccccddddeeeeffff00001111", "AccountSid": "AC0a1b2c3d4e5f60718293a4b5c6d7e8f9",
      "OptOutType": "STOP", "ProfileName": "Zoë Ünïcode", "NewParameter2026": "x=y&z"}, None),
    # A JSON body, signed through bodySHA256.
    ("s3cr3t", "https://hooks.example.com/webhooks/sms", None,
     '{"MessageSid":"SM1","MessageStatus":"delivered","To":"+15550100001"}'),
]


def main():
    out = []
    for token, url, params, body in CASES:
        v = RequestValidator(token)
        if body is not None:
            body_hash = v.compute_hash(body)
            signed_url = f"{url}?bodySHA256={body_hash}"
            signature = v.compute_signature(signed_url, {})
            accepted = v.validate(signed_url, body, signature)
            out.append({"auth_token": token, "url": signed_url, "json_body": body,
                        "signature": signature, "sdk_validates": accepted})
        else:
            signature = v.compute_signature(url, params)
            accepted = v.validate(url, params, signature)
            out.append({"auth_token": token, "url": url, "params": params,
                        "signature": signature, "sdk_validates": accepted})
    doc = {"source": f"twilio (PyPI) {twilio.__version__}, twilio.request_validator.RequestValidator",
           "cases": out}
    path = pathlib.Path(__file__).with_name("twilio-python-sdk.json")
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
