"""Editions: what an edition says.

Owns the edition document, its one typed shape and its validation (schema.py), loading
and saving content and freezing the rendering (store.py), and pasted Markdown drafts
(drafts.py). May import the shared rules at the top of `service`, `service.models`,
`service.mail` and the lifecycle table (`service.sending.lifecycle`); never flask,
werkzeug, celery, kombu nor `worker`.
"""
