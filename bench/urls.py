"""The application's URLs plus the floor views of the HTTP measurement."""

from django.urls import path

from bench.floor_views import conversations_floor, conversations_floor_sync
from config.urls import urlpatterns as app_urlpatterns

urlpatterns = [
    path("bench/floor/conversations", conversations_floor),
    path("bench/floor/conversations-sync", conversations_floor_sync),
    *app_urlpatterns,
]
