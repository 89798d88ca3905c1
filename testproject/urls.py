from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("enqueue/", views.enqueue, name="enqueue"),
    path("results/<str:result_id>/", views.result, name="result"),
    path("admin/", admin.site.urls),
]
