"""Seed the price table with list prices, as recorded on 2026-11-27.

USD per unit (multimodal.pricing.UNITS), written as the providers publish them:

- OpenAI (platform.openai.com pricing, standard tier): tts-1 $15 and tts-1-hd $30 per 1M
  characters; whisper-1 $0.006 per minute of audio; gpt-4o-mini $0.15 input / $0.60 output
  per 1M tokens; gpt-4o $2.50 input / $10.00 output per 1M tokens. Token-priced speech
  models (gpt-4o-mini-tts, gpt-4o-transcribe) are not seeded: their bill is in tokens this
  service does not see for speech, so their cost stays unknown until an operator prices them.
- ElevenLabs (elevenlabs.io API pricing, pay-as-you-go text to speech): Multilingual v2 and
  v3 $0.10 per 1,000 characters; Flash and Turbo $0.05 per 1,000 characters.
- Offline engines (espeak-ng, whisper-local tiny.en, tesseract-5): a nominal $0.00002 per
  compute second ($0.072 per compute hour, about one vCPU of an on-demand general-purpose
  cloud VM), so self-hosted work shows up in spend; set 0 to treat it as free.

Prices change: operators keep them current with PUT /v1/multimodal/prices/{provider}/{model}
or the admin. Rows that already exist are left alone, and unapplying removes only seeded rows
nobody has changed since.
"""

from django.db import migrations
from django.utils import timezone

SEEDED_BY = "migration:0007_seed_prices (list prices of 2026-11-27)"
COMPUTE_SECOND = "0.00002"

PRICES = {
    ("openai", "tts-1"): {"characters": "0.000015"},
    ("openai", "tts-1-hd"): {"characters": "0.00003"},
    ("openai", "whisper-1"): {"audio_seconds": "0.0001"},
    ("openai", "gpt-4o-mini"): {"input_tokens": "0.00000015", "output_tokens": "0.0000006"},
    ("openai", "gpt-4o"): {"input_tokens": "0.0000025", "output_tokens": "0.00001"},
    ("elevenlabs", "eleven_multilingual_v2"): {"characters": "0.0001"},
    ("elevenlabs", "eleven_v3"): {"characters": "0.0001"},
    ("elevenlabs", "eleven_flash_v2_5"): {"characters": "0.00005"},
    ("elevenlabs", "eleven_flash_v2"): {"characters": "0.00005"},
    ("elevenlabs", "eleven_turbo_v2_5"): {"characters": "0.00005"},
    ("elevenlabs", "eleven_turbo_v2"): {"characters": "0.00005"},
    ("espeak", "espeak-ng"): {"compute_seconds": COMPUTE_SECOND},
    ("whisper-local", "tiny.en"): {"compute_seconds": COMPUTE_SECOND},
    ("tesseract", "tesseract-5"): {"compute_seconds": COMPUTE_SECOND},
}


def seed(apps, schema_editor):
    ProviderPrice = apps.get_model("multimodal", "ProviderPrice")
    now = timezone.now()
    existing = set(ProviderPrice.objects.values_list("provider", "model"))
    ProviderPrice.objects.bulk_create([
        ProviderPrice(provider=provider, model=model,
                      usd_per_unit=usd_per_unit, version=1, updated_at=now,
                      updated_by=SEEDED_BY)
        for (provider, model), usd_per_unit in PRICES.items()
        if (provider, model) not in existing
    ])


def unseed(apps, schema_editor):
    ProviderPrice = apps.get_model("multimodal", "ProviderPrice")
    ProviderPrice.objects.filter(updated_by=SEEDED_BY, version=1).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("multimodal", "0006_economics"),
    ]

    operations = [
        migrations.RunPython(seed, unseed),
    ]
