from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("enqueue/", views.enqueue, name="enqueue"),
    path("results/<str:result_id>/", views.result, name="result"),
    path("admin/", admin.site.urls),
]

try:  # the metrics need the optional prometheus-client
    from django_tasks_q.metrics import metrics_view
except ImportError:
    pass
else:
    urlpatterns.append(path("metrics/", metrics_view))
