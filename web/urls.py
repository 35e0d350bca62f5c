from django.contrib.auth import views as auth_views
from django.urls import path

from web import views

app_name = "web"

urlpatterns = [
    path("", views.workbench, name="workbench"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="web/login.html", next_page="/", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="/login/"), name="logout"),
    path("chart/<str:patient_id>", views.chart, name="chart"),
    path("portal/", views.portal, name="portal"),
]
