"""Domain logic. Used by the API and the tasks; never imports Flask requests or Celery."""
