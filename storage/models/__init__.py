"""SQLAlchemy models. Importing this package registers every table on ``Base.metadata``."""

from cvat_ray.storage.models.annotations import LabeledShape, LabeledTag, LabeledTrack
from cvat_ray.storage.models.base import Base, UTCDateTime, utcnow
from cvat_ray.storage.models.engine import Data, DataFrame, Job, Project, Segment, Task
from cvat_ray.storage.models.events import EventOutbox
from cvat_ray.storage.models.functions import LambdaFunction
from cvat_ray.storage.models.guides import AnnotationGuide, Asset, QualitySettings
from cvat_ray.storage.models.identity import AccessToken, AuthSession, Group, User, user_groups
from cvat_ray.storage.models.issues import Comment, Issue
from cvat_ray.storage.models.labels import AttributeSpec, Label
from cvat_ray.storage.models.media import CloudStorage, RelatedFile
from cvat_ray.storage.models.organizations import Invitation, Membership, Organization
from cvat_ray.storage.models.requests import BackgroundRequest
from cvat_ray.storage.models.webhooks import Webhook, WebhookDelivery

__all__ = [
    "AccessToken",
    "AnnotationGuide",
    "Asset",
    "AttributeSpec",
    "AuthSession",
    "BackgroundRequest",
    "Base",
    "CloudStorage",
    "Comment",
    "Data",
    "DataFrame",
    "EventOutbox",
    "Group",
    "Invitation",
    "Issue",
    "Job",
    "Label",
    "LabeledShape",
    "LabeledTag",
    "LabeledTrack",
    "LambdaFunction",
    "Membership",
    "Organization",
    "Project",
    "QualitySettings",
    "RelatedFile",
    "Segment",
    "Task",
    "UTCDateTime",
    "User",
    "Webhook",
    "WebhookDelivery",
    "user_groups",
    "utcnow",
]
