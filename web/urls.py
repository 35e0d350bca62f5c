from django.contrib.auth import views as auth_views
from django.urls import path

from web import views
from web.signin import SignInView

app_name = "web"

urlpatterns = [
    path("", views.workbench, name="workbench"),
    path("login/", SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/login/"), name="logout"),
    path("chart/<str:patient_id>", views.chart, name="chart"),
    path("portal/", views.portal, name="portal"),
]
