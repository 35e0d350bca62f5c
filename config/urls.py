from django.urls import include, path

urlpatterns = [
    path("", include("ops.urls")),
    path("", include("graph.urls")),
    path("", include("graph.download_urls")),
    path("", include("web.urls")),
]
