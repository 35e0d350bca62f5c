from django.urls import include, path

urlpatterns = [
    path("", include("graph.urls")),
    path("", include("web.urls")),
]
