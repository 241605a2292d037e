"""Glance's policy rules as data: the 67 rules of Glance 33 (``glance/policies/*.py``) with their
default check strings verbatim, plus glimpse's ``copy_from`` (v1's copy of data from a URL,
which current Glance no longer registers).

This table is what an operator's policy file overrides, what the sample generator prints and
what docs/identity.md lists. How each default is evaluated is ``glimpse.domain.policy``: a
hand-written predicate per rule, equal to its check string (a differential test holds them to
oslo.policy's evaluation).

``operations`` are the requests a rule guards in glimpse, v1 and v2 alike; for the rules of APIs
glimpse does not serve (metadefs, tasks, store details) they are Glance's, and
``served`` is False.
"""

from __future__ import annotations

import dataclasses

# (method, path): a request a rule guards.
Operation = tuple[str, str]

# Glance's building blocks (glance/policies/base.py), so that the check strings below read as
# Glance writes them.
ADMIN = "rule:context_is_admin"
DEFAULT = "rule:default"
SERVICE = "rule:service_api"
PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
PROJECT_READER = "role:reader and project_id:%(project_id)s"
IMAGE_MEMBER_CHECK = "project_id:%(member_id)s"
COMMUNITY_VISIBILITY_CHECK = "'community':%(visibility)s"
PUBLIC_VISIBILITY_CHECK = "'public':%(visibility)s"
SHARED_VISIBILITY_CHECK = "'shared':%(visibility)s"
_SEEN_BY = (f"project_id:%(project_id)s or {IMAGE_MEMBER_CHECK} or {COMMUNITY_VISIBILITY_CHECK}"
            f" or {PUBLIC_VISIBILITY_CHECK} or {SHARED_VISIBILITY_CHECK}")
ADMIN_OR_PROJECT_MEMBER = f"{ADMIN} or ({PROJECT_MEMBER})"
ADMIN_OR_PROJECT_READER = f"{ADMIN} or ({PROJECT_READER})"
ADMIN_OR_PROJECT_READER_GET_IMAGE = f"{ADMIN} or (role:reader and ({_SEEN_BY}))"
ADMIN_OR_PROJECT_MEMBER_DOWNLOAD_IMAGE = f"{ADMIN} or (role:member and ({_SEEN_BY}))"
ADMIN_OR_PROJECT_MEMBER_CREATE_IMAGE = f"{ADMIN} or ({PROJECT_MEMBER} and project_id:%(owner)s)"
ADMIN_OR_PROJECT_READER_GET_NAMESPACE = (
    f"{ADMIN} or (role:reader and (project_id:%(project_id)s or {PUBLIC_VISIBILITY_CHECK}))")
ADMIN_OR_SHARED_MEMBER = f"{ADMIN} or (role:member and {IMAGE_MEMBER_CHECK})"
# Verbatim, unbracketed as Glance writes it: "A or B and (C)" is "A or (B and (C))".
ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER = (
    f"{ADMIN} or role:reader and (project_id:%(project_id)s or {IMAGE_MEMBER_CHECK})")
SERVICE_OR_PROJECT_MEMBER = f"{SERVICE} or ({PROJECT_MEMBER} and project_id:%(owner)s)"
ADMIN_OR_SERVICE_ROLE = f"{ADMIN} or {SERVICE}"
METADEF_ADMIN = "rule:metadef_admin"
METADEF_DEFAULT = "rule:metadef_default"
MANAGE_IMAGE_CACHE = "rule:manage_image_cache"


@dataclasses.dataclass(frozen=True)
class Rule:
    """One named rule: its default check string (oslo.policy's language), what it is for, the
    requests it guards, and the older names an operator's file may still use for it."""

    name: str
    check_str: str
    description: str
    operations: tuple[Operation, ...] = ()
    deprecated_names: tuple[str, ...] = ()
    # Glance's scope_types: ('project',) for every rule it documents; () for the base and
    # metadef helper rules, which name none. glimpse accepts project-scoped callers only.
    scope_types: tuple[str, ...] = ("project",)
    # The Wallaby-era default that enforce_new_defaults=false would OR in (glimpse refuses
    # that setting; kept for the sample file).
    deprecated_check_str: str | None = None
    served: bool = True


def _ops(*pairs: str) -> tuple[Operation, ...]:
    """``"GET /v2/images"``, ... as operations."""
    out = []
    for pair in pairs:
        method, _, path = pair.partition(" ")
        out.append((method, path))
    return tuple(out)


IMAGE = "/v2/images/{image_id}"
V1_IMAGE = "/v1/images/{image_id}"
NS = "/v2/metadefs/namespaces/{namespace_name}"

_BASE = (
    Rule("default", "", "The rule of rules that name no other (Glance's tasks rules point to "
         "it). Anyone.", scope_types=(), deprecated_check_str=ADMIN),
    Rule("context_is_admin", "role:admin",
         "Who is an administrator: sees and lists every image, sets admin-only fields, and "
         "passes every rule that names it. Evaluated once per request.", scope_types=()),
    Rule("service_api", "role:service or role:admin",
         "Another cloud service (nova, cinder) calling for a user. glimpse also counts the "
         "roles of a valid X-Service-Token sent beside the user's token.", scope_types=()),
)

_IMAGE = (
    Rule("add_image", ADMIN_OR_PROJECT_MEMBER_CREATE_IMAGE, "Create an image.",
         _ops("POST /v2/images", "POST /v1/images"), deprecated_check_str=DEFAULT),
    Rule("delete_image", ADMIN_OR_PROJECT_MEMBER, "Delete an image.",
         _ops(f"DELETE {IMAGE}", f"DELETE {V1_IMAGE}"), deprecated_check_str=DEFAULT),
    Rule("get_image", ADMIN_OR_PROJECT_READER_GET_IMAGE,
         "Show an image (every request naming an image needs it: where it fails, the image "
         "does not exist for the caller, 404).",
         _ops(f"GET {IMAGE}", f"HEAD {V1_IMAGE}", f"GET {V1_IMAGE}"),
         deprecated_check_str=DEFAULT),
    Rule("get_images", ADMIN_OR_PROJECT_READER, "List images.",
         _ops("GET /v2/images", "GET /v1/images", "GET /v1/images/detail",
              "GET /v1/shared-images/{member_id}"), deprecated_check_str=DEFAULT),
    Rule("modify_image", ADMIN_OR_PROJECT_MEMBER,
         "Change an image's fields, properties or tags.",
         _ops(f"PATCH {IMAGE}", f"PUT {IMAGE}/tags/{{tag}}", f"DELETE {IMAGE}/tags/{{tag}}",
              f"PUT {V1_IMAGE}"), deprecated_check_str=DEFAULT),
    Rule("publicize_image", ADMIN, "Make an image public (create or change).",
         _ops("POST /v2/images", f"PATCH {IMAGE}", "POST /v1/images", f"PUT {V1_IMAGE}")),
    Rule("communitize_image", ADMIN_OR_PROJECT_MEMBER,
         "Make an image community (create or change).",
         _ops("POST /v2/images", f"PATCH {IMAGE}"), deprecated_check_str=DEFAULT),
    Rule("download_image", ADMIN_OR_PROJECT_MEMBER_DOWNLOAD_IMAGE, "Download an image's data.",
         _ops(f"GET {IMAGE}/file", f"GET {V1_IMAGE}"), deprecated_check_str=DEFAULT),
    Rule("download_from_store", ADMIN_OR_PROJECT_MEMBER_DOWNLOAD_IMAGE,
         "Download an image's data from a store the caller names (not served: glimpse "
         "reads from the image's first location).", _ops(f"GET {IMAGE}/file"), served=False),
    Rule("upload_image", ADMIN_OR_PROJECT_MEMBER, "Upload an image's data (or copy it in).",
         _ops(f"PUT {IMAGE}/file", "POST /v1/images", f"PUT {V1_IMAGE}"),
         deprecated_check_str=DEFAULT),
    Rule("delete_image_location", ADMIN,
         "Remove locations of an image (legacy locations PATCH, a store's copy).",
         _ops(f"PATCH {IMAGE}", "DELETE /v2/stores/{store_id}/{image_id}"),
         deprecated_check_str=DEFAULT),
    Rule("get_image_location", ADMIN_OR_PROJECT_READER,
         "See an image's locations and direct_url in the image (when the operator shows them; "
         "service callers see them too); remove a store's copy (with delete_image_location).",
         _ops(f"GET {IMAGE}", "DELETE /v2/stores/{store_id}/{image_id}"),
         deprecated_check_str=DEFAULT),
    Rule("set_image_location", ADMIN_OR_PROJECT_MEMBER,
         "Set locations of an image (legacy locations PATCH, v1's x-image-meta-location).",
         _ops(f"PATCH {IMAGE}", "POST /v1/images", f"PUT {V1_IMAGE}"),
         deprecated_check_str=DEFAULT),
    Rule("add_image_location", SERVICE_OR_PROJECT_MEMBER,
         "Add a location to an image (the locations API).", _ops(f"POST {IMAGE}/locations")),
    Rule("fetch_image_location", SERVICE,
         "List an image's locations (the locations API).", _ops(f"GET {IMAGE}/locations")),
    Rule("add_member", ADMIN_OR_PROJECT_MEMBER, "Share an image with a project.",
         _ops(f"POST {IMAGE}/members", f"PUT {V1_IMAGE}/members",
              f"PUT {V1_IMAGE}/members/{{member_id}}"), deprecated_check_str=DEFAULT),
    Rule("delete_member", ADMIN_OR_PROJECT_MEMBER, "Stop sharing an image with a project.",
         _ops(f"DELETE {IMAGE}/members/{{member_id}}", f"DELETE {V1_IMAGE}/members/{{member_id}}"),
         deprecated_check_str=DEFAULT),
    Rule("get_member", ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER, "Show one membership.",
         _ops(f"GET {IMAGE}/members/{{member_id}}", f"GET {V1_IMAGE}/members/{{member_id}}"),
         deprecated_check_str=DEFAULT),
    Rule("get_members", ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER, "List an image's members.",
         _ops(f"GET {IMAGE}/members", f"GET {V1_IMAGE}/members"), deprecated_check_str=DEFAULT),
    Rule("modify_member", ADMIN_OR_SHARED_MEMBER,
         "A member accepts, rejects or resets its own membership.",
         _ops(f"PUT {IMAGE}/members/{{member_id}}"), deprecated_check_str=DEFAULT),
    Rule("manage_image_cache", ADMIN, "Manage the image cache (not served).", served=False),
    Rule("deactivate", ADMIN_OR_PROJECT_MEMBER, "Deactivate an image.",
         _ops(f"POST {IMAGE}/actions/deactivate"), deprecated_check_str=DEFAULT),
    Rule("reactivate", ADMIN_OR_PROJECT_MEMBER, "Reactivate an image.",
         _ops(f"POST {IMAGE}/actions/reactivate"), deprecated_check_str=DEFAULT),
    Rule("copy_image", ADMIN, "Copy an image to other stores (the copy-image import).",
         _ops(f"POST {IMAGE}/import")),
    Rule("list_cached_nodes", ADMIN, "Nodes caching an image (with a cache configured).",
         _ops("GET /v2/cache/nodes/{image_id}")),
)

_CACHE = (
    Rule("cache_image", ADMIN, "Queue an image for caching (with a cache configured).",
         _ops("PUT /v2/cache/{image_id}"), deprecated_check_str=MANAGE_IMAGE_CACHE),
    Rule("cache_list", ADMIN, "The cache's state (with a cache configured).",
         _ops("GET /v2/cache"), deprecated_check_str=MANAGE_IMAGE_CACHE),
    Rule("cache_delete", ADMIN, "Delete images from the cache (with a cache configured).",
         _ops("DELETE /v2/cache", "DELETE /v2/cache/{image_id}"),
         deprecated_check_str=MANAGE_IMAGE_CACHE),
    Rule("cache_clean", ADMIN, "Clean stalled cache entries (with a cache configured).",
         _ops("POST /v2/cache/clean")),
    Rule("cache_prune", ADMIN, "Prune the cache (with a cache configured).",
         _ops("POST /v2/cache/prune")),
)

_DISCOVERY = (
    Rule("stores_info_detail", ADMIN_OR_SERVICE_ROLE,
         "Stores with their kinds, weights and properties (multi-store).",
         _ops("GET /v2/info/stores/detail"), deprecated_check_str=ADMIN),
)


def _metadef(name: str, check_str: str, description: str, operation: str,
             deprecated: str | None = None) -> Rule:
    return Rule(name, check_str, description + " (not served).", _ops(operation),
                deprecated_check_str=deprecated, served=False)


_GET_NS = ADMIN_OR_PROJECT_READER_GET_NAMESPACE
_METADEF = (
    Rule("metadef_default", "", "What metadef reads defaulted to (not served).",
         scope_types=(), served=False),
    Rule("metadef_admin", ADMIN, "Who changes metadefs (not served).", scope_types=(),
         served=False),
    _metadef("get_metadef_namespace", _GET_NS, "Show a namespace", f"GET {NS}", METADEF_DEFAULT),
    _metadef("get_metadef_namespaces", ADMIN_OR_PROJECT_READER, "List namespaces",
             "GET /v2/metadefs/namespaces", METADEF_DEFAULT),
    _metadef("modify_metadef_namespace", METADEF_ADMIN, "Change a namespace", f"PUT {NS}"),
    _metadef("add_metadef_namespace", METADEF_ADMIN, "Create a namespace",
             "POST /v2/metadefs/namespaces"),
    _metadef("delete_metadef_namespace", METADEF_ADMIN, "Delete a namespace", f"DELETE {NS}"),
    _metadef("get_metadef_object", _GET_NS, "Show an object", f"GET {NS}/objects/{{object_name}}",
             METADEF_DEFAULT),
    _metadef("get_metadef_objects", _GET_NS, "List objects", f"GET {NS}/objects",
             METADEF_DEFAULT),
    _metadef("modify_metadef_object", METADEF_ADMIN, "Change an object",
             f"PUT {NS}/objects/{{object_name}}"),
    _metadef("add_metadef_object", METADEF_ADMIN, "Create an object", f"POST {NS}/objects"),
    _metadef("delete_metadef_object", METADEF_ADMIN, "Delete an object",
             f"DELETE {NS}/objects/{{object_name}}"),
    _metadef("list_metadef_resource_types", _GET_NS, "List resource types",
             "GET /v2/metadefs/resource_types", METADEF_DEFAULT),
    _metadef("get_metadef_resource_type", _GET_NS, "Show resource type associations",
             f"GET {NS}/resource_types", METADEF_DEFAULT),
    _metadef("add_metadef_resource_type_association", METADEF_ADMIN,
             "Create a resource type association", f"POST {NS}/resource_types"),
    _metadef("remove_metadef_resource_type_association", METADEF_ADMIN,
             "Delete a resource type association", f"DELETE {NS}/resource_types/{{name}}"),
    _metadef("get_metadef_property", _GET_NS, "Show a property",
             f"GET {NS}/properties/{{property_name}}", METADEF_DEFAULT),
    _metadef("get_metadef_properties", _GET_NS, "List properties", f"GET {NS}/properties",
             METADEF_DEFAULT),
    _metadef("modify_metadef_property", METADEF_ADMIN, "Change a property",
             f"PUT {NS}/properties/{{property_name}}"),
    _metadef("add_metadef_property", METADEF_ADMIN, "Create a property",
             f"POST {NS}/properties"),
    _metadef("remove_metadef_property", METADEF_ADMIN, "Delete a property",
             f"DELETE {NS}/properties/{{property_name}}"),
    _metadef("get_metadef_tag", _GET_NS, "Show a tag", f"GET {NS}/tags/{{tag_name}}",
             METADEF_DEFAULT),
    _metadef("get_metadef_tags", _GET_NS, "List tags", f"GET {NS}/tags", METADEF_DEFAULT),
    _metadef("modify_metadef_tag", METADEF_ADMIN, "Change a tag", f"PUT {NS}/tags/{{tag_name}}"),
    _metadef("add_metadef_tag", METADEF_ADMIN, "Add a tag", f"POST {NS}/tags/{{tag_name}}"),
    _metadef("add_metadef_tags", METADEF_ADMIN, "Create tags", f"POST {NS}/tags"),
    _metadef("delete_metadef_tag", METADEF_ADMIN, "Delete a tag",
             f"DELETE {NS}/tags/{{tag_name}}"),
    _metadef("delete_metadef_tags", METADEF_ADMIN, "Delete tags", f"DELETE {NS}/tags"),
)

_TASKS = (
    Rule("get_task", DEFAULT, "Show a task.", _ops("GET /v2/tasks/{task_id}"),
         deprecated_check_str=DEFAULT),
    Rule("get_tasks", DEFAULT, "List tasks.", _ops("GET /v2/tasks"),
         deprecated_check_str=DEFAULT),
    Rule("add_task", DEFAULT, "Create a task.", _ops("POST /v2/tasks"),
         deprecated_check_str=DEFAULT),
    Rule("modify_task", DEFAULT, "Unused by Glance (not served).",
         _ops("DELETE /v2/tasks/{task_id}"), served=False),
    Rule("tasks_api_access", ADMIN, "Every tasks API request.",
         _ops("GET /v2/tasks/{task_id}", "GET /v2/tasks", "POST /v2/tasks",
              "DELETE /v2/tasks/{task_id}")),
)

# glimpse's own: v1's x-glance-api-copy-from (Glance registered it while it served v1).
_GLIMPSE = (
    Rule("copy_from", ADMIN_OR_PROJECT_MEMBER,
         "Copy an image's data from an external URL (v1's x-glance-api-copy-from).",
         _ops("POST /v1/images", f"PUT {V1_IMAGE}")),
)

# Glance's order (glance/policies/__init__.py: base, image, tasks, metadef, cache, discovery).
GLANCE_RULES: tuple[Rule, ...] = _BASE + _IMAGE + _TASKS + _METADEF + _CACHE + _DISCOVERY
RULES: tuple[Rule, ...] = GLANCE_RULES + _GLIMPSE
BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}
# An older name an operator's file may use -> the rule it now is (none in Glance 33: its
# deprecations changed check strings, not names).
DEPRECATED_NAMES: dict[str, str] = {
    old: rule.name for rule in RULES for old in rule.deprecated_names}
