from django.apps import AppConfig


class MultimodalConfig(AppConfig):
    name = "multimodal"
