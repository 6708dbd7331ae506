"""SQLAlchemy models. Importing this package registers every table on ``Base.metadata``."""

from storage.models.annotations import LabeledShape, LabeledTag, LabeledTrack
from storage.models.base import Base, UTCDateTime, utcnow
from storage.models.engine import Data, DataFrame, Job, Project, Segment, Task
from storage.models.functions import LambdaFunction
from storage.models.identity import AccessToken, AuthSession, Group, User, user_groups
from storage.models.issues import Comment, Issue
from storage.models.labels import AttributeSpec, Label
from storage.models.media import CloudStorage, RelatedFile
from storage.models.organizations import Invitation, Membership, Organization
from storage.models.requests import BackgroundRequest

__all__ = [
    "AccessToken",
    "AttributeSpec",
    "AuthSession",
    "BackgroundRequest",
    "Base",
    "CloudStorage",
    "Comment",
    "Data",
    "DataFrame",
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
    "RelatedFile",
    "Segment",
    "Task",
    "UTCDateTime",
    "User",
    "user_groups",
    "utcnow",
]
