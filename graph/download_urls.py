from django.urls import path

from graph.downloads import download_attachment

urlpatterns = [
    path("attachments/<int:attachment_id>/download", download_attachment, name="attachment-download"),
]
