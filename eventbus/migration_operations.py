"""Migration operations for tables that are written on every order, where a schema change must not
stop the writes."""

from __future__ import annotations

from django.db.migrations.operations import AddIndex


class AddIndexConcurrently(AddIndex):
    """AddIndex that builds the index without blocking writes on PostgreSQL (CREATE INDEX
    CONCURRENTLY: the outbox and the orders take a write with every order), and as a plain AddIndex
    on SQLite. Like django.contrib.postgres's own, its migration must set `atomic = False`."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.add_index(model, self.index, concurrently=True)
            else:
                schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.remove_index(model, self.index, concurrently=True)
            else:
                schema_editor.remove_index(model, self.index)
