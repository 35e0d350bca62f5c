"""The direct resolvers of `graph.fast_fields` answer exactly what strawberry's and strawberry-django's would."""

from __future__ import annotations

import pytest
from django.db import models
from django.db.models.query_utils import DeferredAttribute
from graphql import GraphQLObjectType
from strawberry import relay
from strawberry.schema.schema_converter import GraphQLCoreConverter

from core.actions import send_staff_message
from core.models import AuditEvent, Conversation, Mailbox, Membership, Message, Patient, Practice, User
from graph.schema import schema

GRAPHQL = schema._schema


def fast_fields() -> dict[tuple[str, str], str]:
    found = {}
    for graphql_type in GRAPHQL.type_map.values():
        if isinstance(graphql_type, GraphQLObjectType):
            for name, field in graphql_type.fields.items():
                if hasattr(field.resolve, "fast_field"):
                    found[(graphql_type.name, name)] = field.resolve.fast_field
    return found


def model_of(type_name: str) -> type[models.Model] | None:
    definition = GRAPHQL.type_map[type_name].extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
    django_definition = getattr(definition.origin, "__strawberry_django_definition__", None)
    return django_definition.model if django_definition is not None else None


def test_only_plain_columns_and_node_ids_take_the_direct_path():
    found = fast_fields()
    # Every node type's id, and the columns a page reads most
    for type_name in ("Mailbox", "Conversation", "Message", "Patient", "User", "Attachment", "Practice"):
        assert found[(type_name, "id")] == "id"
    for column in ("sequence", "direction", "sentAt", "clientMessageId", "isAutomatic"):
        assert ("Message", column) in found
    # Methods that need nothing but the row are called directly
    for method in (("Patient", "fullName"), ("Message", "senderName"), ("Conversation", "unreadCount")):
        assert method in found
    # Fields that take the viewer (guards, batched loads) or arguments keep strawberry's resolver
    for guarded in (
        ("Conversation", "mailbox"),
        ("Conversation", "messages"),
        ("Mailbox", "subscriberCount"),
        ("Mailbox", "conversations"),
        ("Patient", "conversations"),
        ("Message", "body"),  # empty for a patient once the message is withdrawn
        ("Message", "attachments"),
    ):
        assert guarded not in found
    # Each direct column field reads a concrete column of its type's model
    for (type_name, name), attname in found.items():
        if attname != "id" and not hasattr(GRAPHQL.type_map[type_name].fields[name].resolve, "original"):
            column = getattr(model_of(type_name), attname)
            assert isinstance(column, DeferredAttribute)
            assert column.field.attname == attname


def test_node_types_declare_their_id_attribute_so_it_is_found_once_and_kept():
    node_types = 0
    for graphql_type in GRAPHQL.type_map.values():
        definition = (graphql_type.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        origin = getattr(definition, "origin", None)
        if isinstance(origin, type) and issubclass(origin, relay.Node) and origin is not relay.Node:
            node_types += 1
            assert "pk" not in graphql_type.fields  # `relay.NodeID` is private: no field of the schema
            assert origin.resolve_id_attr() == "pk", origin
            # strawberry keeps only a `NodeID` it found: without one, every id scanned the annotations again
            assert origin._id_attr == "pk", origin
    assert node_types == 9


@pytest.mark.django_db
def test_direct_resolvers_answer_the_loaded_values_and_fall_back_for_deferred_ones(world):
    message = send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Your statement is ready"
    )
    instances = {
        Practice: world.practice,
        User: world.subscriber,
        Mailbox: world.billing,
        Conversation: Conversation.objects.get(pk=world.conversation.pk),
        Message: Message.objects.get(pk=message.pk),
        Patient: world.patient,
        Membership: Membership.objects.filter(user=world.subscriber).first(),
        AuditEvent: AuditEvent.objects.first(),
    }
    for (type_name, name), attname in fast_fields().items():
        model = model_of(type_name)
        if model not in instances:
            continue
        instance = instances[model]
        resolve = GRAPHQL.type_map[type_name].fields[name].resolve
        if attname == "id":
            assert resolve(instance, None) == relay.GlobalID(type_name, str(instance.pk))
        elif hasattr(resolve, "original"):
            assert resolve(instance, None) == resolve.original(instance, None), (type_name, name)
        else:
            assert resolve(instance, None) == getattr(instance, attname), (type_name, name)
    # A column left out of the query is not in the instance's __dict__: the original resolver loads it
    deferred = Message.objects.only("id").get(pk=message.pk)
    assert "client_message_id" not in deferred.__dict__
    assert GRAPHQL.type_map["Message"].fields["clientMessageId"].resolve(deferred, None) == message.client_message_id
