"""The application's URLs plus the floor views of the HTTP measurement."""

from django.urls import path

from bench.floor_views import conversations_floor
from config.urls import urlpatterns as app_urlpatterns

urlpatterns = [path("bench/floor/conversations", conversations_floor), *app_urlpatterns]
