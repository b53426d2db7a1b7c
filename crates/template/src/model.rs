//! Upstream's data model: Go's `templateData` and the Kubernetes Go structs it points to,
//! exposed with **Go struct field names** over the k8s-openapi Rust types.
//!
//! Field names, field types and method sets were taken from k8s.io/api and
//! k8s.io/apimachinery v0.36 with reflection (see `gen/`). Fields whose type we do not
//! model (probes, security contexts, affinity, ...) still exist: they can be tested for
//! nil, compared with `len`, ranged over, but reaching *into* them is reported as
//! unsupported rather than silently printing `<no value>`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::jiff::Timestamp;

use crate::TemplateData;
use crate::value::{BOOL, INT, INT32, INT64, Kind, MapRef, STRING, SliceRef, Ty, Val};

/// Static description of a Go struct type.
#[derive(Debug)]
pub(crate) struct StructDesc {
    /// All field names, including promoted ones (empty for unmodelled structs).
    pub fields: &'static [&'static str],
    /// The method set of `*T` (a superset of `T`'s).
    pub methods: &'static [&'static str],
    /// Whether `*T` has a gogo-protobuf style `String()` (prints "nil" for nil).
    pub gogo_string: bool,
    /// False for structs whose fields we do not model.
    pub modeled: bool,
}

/// Methods generated for every Kubernetes API struct.
const GOGO: &[&str] = &[
    "DeepCopy",
    "DeepCopyInto",
    "Marshal",
    "MarshalTo",
    "MarshalToSizedBuffer",
    "OpenAPIModelName",
    "Reset",
    "Size",
    "String",
    "SwaggerDoc",
    "Unmarshal",
];

const OBJECT_META_METHODS: &[&str] = &[
    "DeepCopy",
    "DeepCopyInto",
    "GetAnnotations",
    "GetCreationTimestamp",
    "GetDeletionGracePeriodSeconds",
    "GetDeletionTimestamp",
    "GetFinalizers",
    "GetGenerateName",
    "GetGeneration",
    "GetLabels",
    "GetManagedFields",
    "GetName",
    "GetNamespace",
    "GetObjectMeta",
    "GetOwnerReferences",
    "GetResourceVersion",
    "GetSelfLink",
    "GetUID",
    "Marshal",
    "MarshalTo",
    "MarshalToSizedBuffer",
    "OpenAPIModelName",
    "Reset",
    "SetAnnotations",
    "SetCreationTimestamp",
    "SetDeletionGracePeriodSeconds",
    "SetDeletionTimestamp",
    "SetFinalizers",
    "SetGenerateName",
    "SetGeneration",
    "SetLabels",
    "SetManagedFields",
    "SetName",
    "SetNamespace",
    "SetOwnerReferences",
    "SetResourceVersion",
    "SetSelfLink",
    "SetUID",
    "Size",
    "String",
    "SwaggerDoc",
    "Unmarshal",
];

const TIME_METHODS: &[&str] = &[
    "Add",
    "AddDate",
    "After",
    "AppendBinary",
    "AppendFormat",
    "AppendText",
    "Before",
    "Clock",
    "Compare",
    "Date",
    "Day",
    "DeepCopy",
    "DeepCopyInto",
    "Equal",
    "Format",
    "GoString",
    "GobDecode",
    "GobEncode",
    "Hour",
    "ISOWeek",
    "In",
    "IsDST",
    "IsZero",
    "Local",
    "Location",
    "Marshal",
    "MarshalBinary",
    "MarshalCBOR",
    "MarshalJSON",
    "MarshalQueryParameter",
    "MarshalText",
    "MarshalTo",
    "MarshalToSizedBuffer",
    "Minute",
    "Month",
    "Nanosecond",
    "OpenAPIModelName",
    "OpenAPISchemaFormat",
    "OpenAPISchemaType",
    "ProtoTime",
    "RandFill",
    "Reset",
    "Rfc3339Copy",
    "Round",
    "Second",
    "Size",
    "String",
    "Sub",
    "ToUnstructured",
    "Truncate",
    "UTC",
    "Unix",
    "UnixMicro",
    "UnixMilli",
    "UnixNano",
    "Unmarshal",
    "UnmarshalBinary",
    "UnmarshalCBOR",
    "UnmarshalJSON",
    "UnmarshalQueryParameter",
    "UnmarshalText",
    "Weekday",
    "Year",
    "YearDay",
    "Zone",
    "ZoneBounds",
];

const GO_TIME_METHODS: &[&str] = &[
    "Add",
    "AddDate",
    "After",
    "AppendBinary",
    "AppendFormat",
    "AppendText",
    "Before",
    "Clock",
    "Compare",
    "Date",
    "Day",
    "Equal",
    "Format",
    "GoString",
    "GobDecode",
    "GobEncode",
    "Hour",
    "ISOWeek",
    "In",
    "IsDST",
    "IsZero",
    "Local",
    "Location",
    "MarshalBinary",
    "MarshalJSON",
    "MarshalText",
    "Minute",
    "Month",
    "Nanosecond",
    "Round",
    "Second",
    "String",
    "Sub",
    "Truncate",
    "UTC",
    "Unix",
    "UnixMicro",
    "UnixMilli",
    "UnixNano",
    "UnmarshalBinary",
    "UnmarshalJSON",
    "UnmarshalText",
    "Weekday",
    "Year",
    "YearDay",
    "Zone",
    "ZoneBounds",
];

const CONTAINER_FIELDS: &[&str] = &[
    "Name",
    "Image",
    "Command",
    "Args",
    "WorkingDir",
    "Ports",
    "EnvFrom",
    "Env",
    "Resources",
    "ResizePolicy",
    "RestartPolicy",
    "RestartPolicyRules",
    "VolumeMounts",
    "VolumeDevices",
    "LivenessProbe",
    "ReadinessProbe",
    "StartupProbe",
    "Lifecycle",
    "TerminationMessagePath",
    "TerminationMessagePolicy",
    "ImagePullPolicy",
    "SecurityContext",
    "Stdin",
    "StdinOnce",
    "TTY",
];

const EPHEMERAL_FIELDS: &[&str] = &[
    "EphemeralContainerCommon",
    "TargetContainerName",
    "Name",
    "Image",
    "Command",
    "Args",
    "WorkingDir",
    "Ports",
    "EnvFrom",
    "Env",
    "Resources",
    "ResizePolicy",
    "RestartPolicy",
    "RestartPolicyRules",
    "VolumeMounts",
    "VolumeDevices",
    "LivenessProbe",
    "ReadinessProbe",
    "StartupProbe",
    "Lifecycle",
    "TerminationMessagePath",
    "TerminationMessagePolicy",
    "ImagePullPolicy",
    "SecurityContext",
    "Stdin",
    "StdinOnce",
    "TTY",
];

const VOLUME_FIELDS: &[&str] = &[
    "Name",
    "VolumeSource",
    "HostPath",
    "EmptyDir",
    "GCEPersistentDisk",
    "AWSElasticBlockStore",
    "GitRepo",
    "Secret",
    "NFS",
    "ISCSI",
    "Glusterfs",
    "PersistentVolumeClaim",
    "RBD",
    "FlexVolume",
    "Cinder",
    "CephFS",
    "Flocker",
    "DownwardAPI",
    "FC",
    "AzureFile",
    "ConfigMap",
    "VsphereVolume",
    "Quobyte",
    "AzureDisk",
    "PhotonPersistentDisk",
    "Projected",
    "PortworxVolume",
    "ScaleIO",
    "StorageOS",
    "CSI",
    "Ephemeral",
    "Image",
];

macro_rules! structs {
    ($($desc:ident = { fields: $f:expr, methods: $m:expr, gogo: $g:expr, modeled: $md:expr };)*) => {
        $(pub(crate) static $desc: StructDesc = StructDesc { fields: $f, methods: $m, gogo_string: $g, modeled: $md };)*
    };
}

structs! {
    D_TEMPLATE_DATA = { fields: &["TrustDomain", "ClusterName", "ClusterDomain", "PodMeta", "PodSpec", "NodeMeta", "NodeSpec"], methods: &[], gogo: false, modeled: true };
    D_OBJECT_META = { fields: &["Name", "GenerateName", "Namespace", "SelfLink", "UID", "ResourceVersion", "Generation", "CreationTimestamp", "DeletionTimestamp", "DeletionGracePeriodSeconds", "Labels", "Annotations", "OwnerReferences", "Finalizers", "ManagedFields"], methods: OBJECT_META_METHODS, gogo: true, modeled: true };
    D_POD_SPEC = { fields: &["Volumes", "InitContainers", "Containers", "EphemeralContainers", "RestartPolicy", "TerminationGracePeriodSeconds", "ActiveDeadlineSeconds", "DNSPolicy", "NodeSelector", "ServiceAccountName", "DeprecatedServiceAccount", "AutomountServiceAccountToken", "NodeName", "HostNetwork", "HostPID", "HostIPC", "ShareProcessNamespace", "SecurityContext", "ImagePullSecrets", "Hostname", "Subdomain", "Affinity", "SchedulerName", "Tolerations", "HostAliases", "PriorityClassName", "Priority", "DNSConfig", "ReadinessGates", "RuntimeClassName", "EnableServiceLinks", "PreemptionPolicy", "Overhead", "TopologySpreadConstraints", "SetHostnameAsFQDN", "OS", "HostUsers", "SchedulingGates", "ResourceClaims", "Resources", "HostnameOverride", "SchedulingGroup"], methods: GOGO, gogo: true, modeled: true };
    D_NODE_SPEC = { fields: &["PodCIDR", "PodCIDRs", "ProviderID", "Unschedulable", "Taints", "ConfigSource", "DoNotUseExternalID"], methods: GOGO, gogo: true, modeled: true };
    D_CONTAINER = { fields: CONTAINER_FIELDS, methods: GOGO, gogo: true, modeled: true };
    D_EPHEMERAL = { fields: EPHEMERAL_FIELDS, methods: GOGO, gogo: true, modeled: true };
    D_EPHEMERAL_COMMON = { fields: CONTAINER_FIELDS, methods: GOGO, gogo: true, modeled: true };
    D_CONTAINER_PORT = { fields: &["Name", "HostPort", "ContainerPort", "Protocol", "HostIP"], methods: GOGO, gogo: true, modeled: true };
    D_ENV_VAR = { fields: &["Name", "Value", "ValueFrom"], methods: GOGO, gogo: true, modeled: true };
    D_OWNER_REFERENCE = { fields: &["APIVersion", "Kind", "Name", "UID", "Controller", "BlockOwnerDeletion"], methods: GOGO, gogo: true, modeled: true };
    D_MANAGED_FIELDS = { fields: &["Manager", "Operation", "APIVersion", "Time", "FieldsType", "FieldsV1", "Subresource"], methods: GOGO, gogo: true, modeled: true };
    D_TOLERATION = { fields: &["Key", "Operator", "Value", "Effect", "TolerationSeconds"], methods: &["DeepCopy", "DeepCopyInto", "Marshal", "MarshalTo", "MarshalToSizedBuffer", "MatchToleration", "OpenAPIModelName", "Reset", "Size", "String", "SwaggerDoc", "ToleratesTaint", "Unmarshal"], gogo: true, modeled: true };
    D_TAINT = { fields: &["Key", "Value", "Effect", "TimeAdded"], methods: &["DeepCopy", "DeepCopyInto", "Marshal", "MarshalTo", "MarshalToSizedBuffer", "MatchTaint", "OpenAPIModelName", "Reset", "Size", "String", "SwaggerDoc", "ToString", "Unmarshal"], gogo: true, modeled: true };
    D_LOCAL_OBJECT_REFERENCE = { fields: &["Name"], methods: GOGO, gogo: true, modeled: true };
    D_HOST_ALIAS = { fields: &["IP", "Hostnames"], methods: GOGO, gogo: true, modeled: true };
    D_READINESS_GATE = { fields: &["ConditionType"], methods: GOGO, gogo: true, modeled: true };
    D_SCHEDULING_GATE = { fields: &["Name"], methods: GOGO, gogo: true, modeled: true };
    D_RESOURCE_CLAIM = { fields: &["Name", "ResourceClaimName", "ResourceClaimTemplateName"], methods: GOGO, gogo: true, modeled: true };
    D_POD_OS = { fields: &["Name"], methods: GOGO, gogo: true, modeled: true };
    D_VOLUME = { fields: VOLUME_FIELDS, methods: GOGO, gogo: true, modeled: true };
    D_META_TIME = { fields: &["Time"], methods: TIME_METHODS, gogo: false, modeled: true };
    D_GO_TIME = { fields: &[], methods: GO_TIME_METHODS, gogo: false, modeled: true };
    D_OPAQUE = { fields: &[], methods: GOGO, gogo: true, modeled: false };
    D_QUANTITY = { fields: &[], methods: &[], gogo: false, modeled: false };
}

macro_rules! types {
    ($($id:ident = $name:literal : $kind:expr;)*) => {
        $(pub(crate) static $id: Ty = Ty { name: $name, kind: $kind };)*
    };
}

types! {
    UID = "types.UID": Kind::String;
    RESTART_POLICY = "v1.RestartPolicy": Kind::String;
    DNS_POLICY = "v1.DNSPolicy": Kind::String;
    PREEMPTION_POLICY = "v1.PreemptionPolicy": Kind::String;
    PROTOCOL = "v1.Protocol": Kind::String;
    PULL_POLICY = "v1.PullPolicy": Kind::String;
    TERMINATION_MESSAGE_POLICY = "v1.TerminationMessagePolicy": Kind::String;
    CONTAINER_RESTART_POLICY = "v1.ContainerRestartPolicy": Kind::String;
    TOLERATION_OPERATOR = "v1.TolerationOperator": Kind::String;
    TAINT_EFFECT = "v1.TaintEffect": Kind::String;
    POD_CONDITION_TYPE = "v1.PodConditionType": Kind::String;
    OS_NAME = "v1.OSName": Kind::String;
    MANAGED_FIELDS_OPERATION = "v1.ManagedFieldsOperationType": Kind::String;
    RESOURCE_NAME = "v1.ResourceName": Kind::String;

    TEMPLATE_DATA = "spireentry.templateData": Kind::Struct(&D_TEMPLATE_DATA);
    PTR_TEMPLATE_DATA = "*spireentry.templateData": Kind::Ptr(&TEMPLATE_DATA);
    OBJECT_META = "v1.ObjectMeta": Kind::Struct(&D_OBJECT_META);
    PTR_OBJECT_META = "*v1.ObjectMeta": Kind::Ptr(&OBJECT_META);
    POD_SPEC = "v1.PodSpec": Kind::Struct(&D_POD_SPEC);
    PTR_POD_SPEC = "*v1.PodSpec": Kind::Ptr(&POD_SPEC);
    NODE_SPEC = "v1.NodeSpec": Kind::Struct(&D_NODE_SPEC);
    PTR_NODE_SPEC = "*v1.NodeSpec": Kind::Ptr(&NODE_SPEC);
    CONTAINER = "v1.Container": Kind::Struct(&D_CONTAINER);
    EPHEMERAL_CONTAINER = "v1.EphemeralContainer": Kind::Struct(&D_EPHEMERAL);
    EPHEMERAL_COMMON = "v1.EphemeralContainerCommon": Kind::Struct(&D_EPHEMERAL_COMMON);
    CONTAINER_PORT = "v1.ContainerPort": Kind::Struct(&D_CONTAINER_PORT);
    ENV_VAR = "v1.EnvVar": Kind::Struct(&D_ENV_VAR);
    OWNER_REFERENCE = "v1.OwnerReference": Kind::Struct(&D_OWNER_REFERENCE);
    MANAGED_FIELDS_ENTRY = "v1.ManagedFieldsEntry": Kind::Struct(&D_MANAGED_FIELDS);
    TOLERATION = "v1.Toleration": Kind::Struct(&D_TOLERATION);
    TAINT = "v1.Taint": Kind::Struct(&D_TAINT);
    LOCAL_OBJECT_REFERENCE = "v1.LocalObjectReference": Kind::Struct(&D_LOCAL_OBJECT_REFERENCE);
    HOST_ALIAS = "v1.HostAlias": Kind::Struct(&D_HOST_ALIAS);
    READINESS_GATE = "v1.PodReadinessGate": Kind::Struct(&D_READINESS_GATE);
    SCHEDULING_GATE = "v1.PodSchedulingGate": Kind::Struct(&D_SCHEDULING_GATE);
    RESOURCE_CLAIM = "v1.PodResourceClaim": Kind::Struct(&D_RESOURCE_CLAIM);
    POD_OS = "v1.PodOS": Kind::Struct(&D_POD_OS);
    PTR_POD_OS = "*v1.PodOS": Kind::Ptr(&POD_OS);
    VOLUME = "v1.Volume": Kind::Struct(&D_VOLUME);
    META_TIME = "v1.Time": Kind::Struct(&D_META_TIME);
    PTR_META_TIME = "*v1.Time": Kind::Ptr(&META_TIME);
    GO_TIME = "time.Time": Kind::Struct(&D_GO_TIME);

    PTR_INT64 = "*int64": Kind::Ptr(&INT64);
    PTR_INT32 = "*int32": Kind::Ptr(&INT32);
    PTR_BOOL = "*bool": Kind::Ptr(&BOOL);
    PTR_STRING = "*string": Kind::Ptr(&STRING);
    PTR_PREEMPTION_POLICY = "*v1.PreemptionPolicy": Kind::Ptr(&PREEMPTION_POLICY);
    PTR_CONTAINER_RESTART_POLICY = "*v1.ContainerRestartPolicy": Kind::Ptr(&CONTAINER_RESTART_POLICY);

    MAP_STRING_STRING = "map[string]string": Kind::Map(&STRING, &STRING);
    QUANTITY = "resource.Quantity": Kind::Struct(&D_QUANTITY);
    RESOURCE_LIST = "v1.ResourceList": Kind::Map(&RESOURCE_NAME, &QUANTITY);

    SLICE_STRING = "[]string": Kind::Slice(&STRING);
    SLICE_CONTAINER = "[]v1.Container": Kind::Slice(&CONTAINER);
    SLICE_EPHEMERAL = "[]v1.EphemeralContainer": Kind::Slice(&EPHEMERAL_CONTAINER);
    SLICE_VOLUME = "[]v1.Volume": Kind::Slice(&VOLUME);
    SLICE_CONTAINER_PORT = "[]v1.ContainerPort": Kind::Slice(&CONTAINER_PORT);
    SLICE_ENV_VAR = "[]v1.EnvVar": Kind::Slice(&ENV_VAR);
    SLICE_OWNER_REFERENCE = "[]v1.OwnerReference": Kind::Slice(&OWNER_REFERENCE);
    SLICE_MANAGED_FIELDS = "[]v1.ManagedFieldsEntry": Kind::Slice(&MANAGED_FIELDS_ENTRY);
    SLICE_TOLERATION = "[]v1.Toleration": Kind::Slice(&TOLERATION);
    SLICE_TAINT = "[]v1.Taint": Kind::Slice(&TAINT);
    SLICE_LOCAL_OBJECT_REFERENCE = "[]v1.LocalObjectReference": Kind::Slice(&LOCAL_OBJECT_REFERENCE);
    SLICE_HOST_ALIAS = "[]v1.HostAlias": Kind::Slice(&HOST_ALIAS);
    SLICE_READINESS_GATE = "[]v1.PodReadinessGate": Kind::Slice(&READINESS_GATE);
    SLICE_SCHEDULING_GATE = "[]v1.PodSchedulingGate": Kind::Slice(&SCHEDULING_GATE);
    SLICE_RESOURCE_CLAIM = "[]v1.PodResourceClaim": Kind::Slice(&RESOURCE_CLAIM);

    // Structs we do not model field by field.
    POD_SECURITY_CONTEXT = "v1.PodSecurityContext": Kind::Struct(&D_OPAQUE);
    PTR_POD_SECURITY_CONTEXT = "*v1.PodSecurityContext": Kind::Ptr(&POD_SECURITY_CONTEXT);
    AFFINITY = "v1.Affinity": Kind::Struct(&D_OPAQUE);
    PTR_AFFINITY = "*v1.Affinity": Kind::Ptr(&AFFINITY);
    POD_DNS_CONFIG = "v1.PodDNSConfig": Kind::Struct(&D_OPAQUE);
    PTR_POD_DNS_CONFIG = "*v1.PodDNSConfig": Kind::Ptr(&POD_DNS_CONFIG);
    RESOURCE_REQUIREMENTS = "v1.ResourceRequirements": Kind::Struct(&D_OPAQUE);
    PTR_RESOURCE_REQUIREMENTS = "*v1.ResourceRequirements": Kind::Ptr(&RESOURCE_REQUIREMENTS);
    NODE_CONFIG_SOURCE = "v1.NodeConfigSource": Kind::Struct(&D_OPAQUE);
    PTR_NODE_CONFIG_SOURCE = "*v1.NodeConfigSource": Kind::Ptr(&NODE_CONFIG_SOURCE);
    POD_SCHEDULING_GROUP = "v1.PodSchedulingGroup": Kind::Struct(&D_OPAQUE);
    PTR_POD_SCHEDULING_GROUP = "*v1.PodSchedulingGroup": Kind::Ptr(&POD_SCHEDULING_GROUP);
    ENV_VAR_SOURCE = "v1.EnvVarSource": Kind::Struct(&D_OPAQUE);
    PTR_ENV_VAR_SOURCE = "*v1.EnvVarSource": Kind::Ptr(&ENV_VAR_SOURCE);
    PROBE = "v1.Probe": Kind::Struct(&D_OPAQUE);
    PTR_PROBE = "*v1.Probe": Kind::Ptr(&PROBE);
    LIFECYCLE = "v1.Lifecycle": Kind::Struct(&D_OPAQUE);
    PTR_LIFECYCLE = "*v1.Lifecycle": Kind::Ptr(&LIFECYCLE);
    SECURITY_CONTEXT = "v1.SecurityContext": Kind::Struct(&D_OPAQUE);
    PTR_SECURITY_CONTEXT = "*v1.SecurityContext": Kind::Ptr(&SECURITY_CONTEXT);
    FIELDS_V1 = "v1.FieldsV1": Kind::Struct(&D_OPAQUE);
    PTR_FIELDS_V1 = "*v1.FieldsV1": Kind::Ptr(&FIELDS_V1);
    VOLUME_SOURCE = "v1.VolumeSource": Kind::Struct(&D_OPAQUE);
    TOPOLOGY_SPREAD = "v1.TopologySpreadConstraint": Kind::Struct(&D_OPAQUE);
    SLICE_TOPOLOGY_SPREAD = "[]v1.TopologySpreadConstraint": Kind::Slice(&TOPOLOGY_SPREAD);
    ENV_FROM_SOURCE = "v1.EnvFromSource": Kind::Struct(&D_OPAQUE);
    SLICE_ENV_FROM_SOURCE = "[]v1.EnvFromSource": Kind::Slice(&ENV_FROM_SOURCE);
    RESIZE_POLICY = "v1.ContainerResizePolicy": Kind::Struct(&D_OPAQUE);
    SLICE_RESIZE_POLICY = "[]v1.ContainerResizePolicy": Kind::Slice(&RESIZE_POLICY);
    RESTART_RULE = "v1.ContainerRestartRule": Kind::Struct(&D_OPAQUE);
    SLICE_RESTART_RULE = "[]v1.ContainerRestartRule": Kind::Slice(&RESTART_RULE);
    VOLUME_MOUNT = "v1.VolumeMount": Kind::Struct(&D_OPAQUE);
    SLICE_VOLUME_MOUNT = "[]v1.VolumeMount": Kind::Slice(&VOLUME_MOUNT);
    VOLUME_DEVICE = "v1.VolumeDevice": Kind::Struct(&D_OPAQUE);
    SLICE_VOLUME_DEVICE = "[]v1.VolumeDevice": Kind::Slice(&VOLUME_DEVICE);
}

/// A borrowed Go struct value.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Obj<'a> {
    Root(&'a TemplateData<'a>),
    ObjectMeta(&'a meta::ObjectMeta),
    PodSpec(&'a core::PodSpec),
    NodeSpec(&'a core::NodeSpec),
    Container(&'a core::Container),
    EphemeralContainer(&'a core::EphemeralContainer),
    EphemeralCommon(&'a core::EphemeralContainer),
    ContainerPort(&'a core::ContainerPort),
    EnvVar(&'a core::EnvVar),
    OwnerReference(&'a meta::OwnerReference),
    ManagedFieldsEntry(&'a meta::ManagedFieldsEntry),
    Toleration(&'a core::Toleration),
    Taint(&'a core::Taint),
    LocalObjectReference(&'a core::LocalObjectReference),
    HostAlias(&'a core::HostAlias),
    PodReadinessGate(&'a core::PodReadinessGate),
    PodSchedulingGate(&'a core::PodSchedulingGate),
    PodResourceClaim(&'a core::PodResourceClaim),
    PodOS(&'a core::PodOS),
    Volume(&'a core::Volume),
    /// A `v1.Time` or `time.Time` (per the type); `None` is Go's zero time.
    Time(Option<Timestamp>, &'static Ty),
    /// A struct we do not model field by field.
    Opaque(&'static Ty),
}

/// Result of looking a name up as a struct field.
pub(crate) enum FieldLookup<'a> {
    Found(Val<'a>),
    /// A real Go field or method that this implementation does not model.
    Unsupported,
    /// No such field.
    Missing,
}

/// Zero-argument methods we implement.
#[derive(Clone, Copy, Debug)]
pub(crate) enum MethodId {
    /// `ObjectMeta.GetX()`: same as reading field `X`.
    Getter(&'static str),
    TimeUnix,
    TimeUnixMilli,
    TimeUnixMicro,
    TimeUnixNano,
    TimeIsZero,
    TimeYear,
    TimeYearDay,
    TimeDay,
    TimeHour,
    TimeMinute,
    TimeSecond,
    TimeNanosecond,
    TimeString,
    TimeUtc,
    TimeRfc3339Copy,
}

pub(crate) enum MethodLookup {
    Found(MethodId),
    Unsupported,
    Missing,
}

fn sv<'a>(s: &'a Option<String>) -> Val<'a> {
    Val::Str(Cow::Borrowed(s.as_deref().unwrap_or("")), &STRING)
}

fn snamed<'a>(s: &'a Option<String>, ty: &'static Ty) -> Val<'a> {
    Val::Str(Cow::Borrowed(s.as_deref().unwrap_or("")), ty)
}

fn sreq<'a>(s: &'a str, ty: &'static Ty) -> Val<'a> {
    Val::Str(Cow::Borrowed(s), ty)
}

fn int<'a>(v: Option<i64>, ty: &'static Ty) -> Val<'a> {
    Val::Int(v.unwrap_or(0), ty)
}

fn boolv<'a>(v: Option<bool>) -> Val<'a> {
    Val::Bool(v.unwrap_or(false), &BOOL)
}

fn ptr<'a>(inner: Option<Val<'a>>, ty: &'static Ty) -> Val<'a> {
    Val::Ptr(inner.map(Box::new), ty)
}

fn ptr_i64<'a>(v: Option<i64>) -> Val<'a> {
    ptr(v.map(|v| Val::Int(v, &INT64)), &PTR_INT64)
}

fn ptr_bool<'a>(v: Option<bool>) -> Val<'a> {
    ptr(v.map(|v| Val::Bool(v, &BOOL)), &PTR_BOOL)
}

fn ptr_str<'a>(v: &'a Option<String>, ty: &'static Ty) -> Val<'a> {
    let elem = ty.elem().unwrap_or(&STRING);
    ptr(v.as_deref().map(|s| Val::Str(Cow::Borrowed(s), elem)), ty)
}

fn ptr_opaque<'a, T>(v: &Option<T>, ty: &'static Ty) -> Val<'a> {
    let elem = ty.elem().unwrap_or(&STRING);
    ptr(v.as_ref().map(|_| Val::Struct(Obj::Opaque(elem))), ty)
}

fn ptr_time<'a>(v: &Option<meta::Time>) -> Val<'a> {
    ptr(v.as_ref().map(|t| Val::Struct(Obj::Time(Some(t.0), &META_TIME))), &PTR_META_TIME)
}

fn map_ss<'a>(m: &'a Option<BTreeMap<String, String>>) -> Val<'a> {
    Val::Map(m.as_ref().map(MapRef::StrStr), &MAP_STRING_STRING)
}

fn strs<'a>(v: &'a Option<Vec<String>>) -> Val<'a> {
    Val::Slice(v.as_deref().map(SliceRef::Str), &SLICE_STRING)
}

fn opaque_slice<'a, T>(v: &Option<Vec<T>>, ty: &'static Ty) -> Val<'a> {
    Val::Slice(v.as_ref().map(|v| SliceRef::Opaque(v.len())), ty)
}

fn nil_slice<'a>(ty: &'static Ty) -> Val<'a> {
    Val::Slice(None, ty)
}

macro_rules! container_field_fn {
    ($fname:ident, $t:ty) => {
        fn $fname<'a>(c: &'a $t, name: &str) -> Option<Val<'a>> {
            Some(match name {
                "Name" => sreq(&c.name, &STRING),
                "Image" => sv(&c.image),
                "Command" => strs(&c.command),
                "Args" => strs(&c.args),
                "WorkingDir" => sv(&c.working_dir),
                "Ports" => Val::Slice(c.ports.as_deref().map(SliceRef::Ports), &SLICE_CONTAINER_PORT),
                "EnvFrom" => opaque_slice(&c.env_from, &SLICE_ENV_FROM_SOURCE),
                "Env" => Val::Slice(c.env.as_deref().map(SliceRef::Env), &SLICE_ENV_VAR),
                "Resources" => Val::Struct(Obj::Opaque(&RESOURCE_REQUIREMENTS)),
                "ResizePolicy" => opaque_slice(&c.resize_policy, &SLICE_RESIZE_POLICY),
                "RestartPolicy" => ptr_str(&c.restart_policy, &PTR_CONTAINER_RESTART_POLICY),
                "RestartPolicyRules" => nil_slice(&SLICE_RESTART_RULE),
                "VolumeMounts" => opaque_slice(&c.volume_mounts, &SLICE_VOLUME_MOUNT),
                "VolumeDevices" => opaque_slice(&c.volume_devices, &SLICE_VOLUME_DEVICE),
                "LivenessProbe" => ptr_opaque(&c.liveness_probe, &PTR_PROBE),
                "ReadinessProbe" => ptr_opaque(&c.readiness_probe, &PTR_PROBE),
                "StartupProbe" => ptr_opaque(&c.startup_probe, &PTR_PROBE),
                "Lifecycle" => ptr_opaque(&c.lifecycle, &PTR_LIFECYCLE),
                "TerminationMessagePath" => sv(&c.termination_message_path),
                "TerminationMessagePolicy" => snamed(&c.termination_message_policy, &TERMINATION_MESSAGE_POLICY),
                "ImagePullPolicy" => snamed(&c.image_pull_policy, &PULL_POLICY),
                "SecurityContext" => ptr_opaque(&c.security_context, &PTR_SECURITY_CONTEXT),
                "Stdin" => boolv(c.stdin),
                "StdinOnce" => boolv(c.stdin_once),
                "TTY" => boolv(c.tty),
                _ => return None,
            })
        }
    };
}

container_field_fn!(container_field, core::Container);
container_field_fn!(ephemeral_field, core::EphemeralContainer);

impl<'a> Obj<'a> {
    pub fn ty(&self) -> &'static Ty {
        match self {
            Obj::Root(_) => &TEMPLATE_DATA,
            Obj::ObjectMeta(_) => &OBJECT_META,
            Obj::PodSpec(_) => &POD_SPEC,
            Obj::NodeSpec(_) => &NODE_SPEC,
            Obj::Container(_) => &CONTAINER,
            Obj::EphemeralContainer(_) => &EPHEMERAL_CONTAINER,
            Obj::EphemeralCommon(_) => &EPHEMERAL_COMMON,
            Obj::ContainerPort(_) => &CONTAINER_PORT,
            Obj::EnvVar(_) => &ENV_VAR,
            Obj::OwnerReference(_) => &OWNER_REFERENCE,
            Obj::ManagedFieldsEntry(_) => &MANAGED_FIELDS_ENTRY,
            Obj::Toleration(_) => &TOLERATION,
            Obj::Taint(_) => &TAINT,
            Obj::LocalObjectReference(_) => &LOCAL_OBJECT_REFERENCE,
            Obj::HostAlias(_) => &HOST_ALIAS,
            Obj::PodReadinessGate(_) => &READINESS_GATE,
            Obj::PodSchedulingGate(_) => &SCHEDULING_GATE,
            Obj::PodResourceClaim(_) => &RESOURCE_CLAIM,
            Obj::PodOS(_) => &POD_OS,
            Obj::Volume(_) => &VOLUME,
            Obj::Time(_, ty) => ty,
            Obj::Opaque(ty) => ty,
        }
    }

    /// Go's `FieldByName` + read.
    pub fn field(&self, name: &str) -> FieldLookup<'a> {
        let v = match *self {
            Obj::Root(d) => d.field(name),
            Obj::ObjectMeta(m) => object_meta_field(m, name),
            Obj::PodSpec(s) => pod_spec_field(s, name),
            Obj::NodeSpec(s) => match name {
                "PodCIDR" => Some(sv(&s.pod_cidr)),
                "PodCIDRs" => Some(strs(&s.pod_cidrs)),
                "ProviderID" => Some(sv(&s.provider_id)),
                "Unschedulable" => Some(boolv(s.unschedulable)),
                "Taints" => Some(Val::Slice(s.taints.as_deref().map(SliceRef::Taints), &SLICE_TAINT)),
                "ConfigSource" => Some(ptr_opaque(&s.config_source, &PTR_NODE_CONFIG_SOURCE)),
                "DoNotUseExternalID" => Some(sv(&s.external_id)),
                _ => None,
            },
            Obj::Container(c) => container_field(c, name),
            Obj::EphemeralContainer(c) => match name {
                "EphemeralContainerCommon" => Some(Val::Struct(Obj::EphemeralCommon(c))),
                "TargetContainerName" => Some(sv(&c.target_container_name)),
                _ => ephemeral_field(c, name),
            },
            Obj::EphemeralCommon(c) => ephemeral_field(c, name),
            Obj::ContainerPort(p) => match name {
                "Name" => Some(sv(&p.name)),
                "HostPort" => Some(int(p.host_port.map(i64::from), &INT32)),
                "ContainerPort" => Some(Val::Int(p.container_port.into(), &INT32)),
                "Protocol" => Some(snamed(&p.protocol, &PROTOCOL)),
                "HostIP" => Some(sv(&p.host_ip)),
                _ => None,
            },
            Obj::EnvVar(e) => match name {
                "Name" => Some(sreq(&e.name, &STRING)),
                "Value" => Some(sv(&e.value)),
                "ValueFrom" => Some(ptr_opaque(&e.value_from, &PTR_ENV_VAR_SOURCE)),
                _ => None,
            },
            Obj::OwnerReference(o) => match name {
                "APIVersion" => Some(sreq(&o.api_version, &STRING)),
                "Kind" => Some(sreq(&o.kind, &STRING)),
                "Name" => Some(sreq(&o.name, &STRING)),
                "UID" => Some(sreq(&o.uid, &UID)),
                "Controller" => Some(ptr_bool(o.controller)),
                "BlockOwnerDeletion" => Some(ptr_bool(o.block_owner_deletion)),
                _ => None,
            },
            Obj::ManagedFieldsEntry(m) => match name {
                "Manager" => Some(sv(&m.manager)),
                "Operation" => Some(snamed(&m.operation, &MANAGED_FIELDS_OPERATION)),
                "APIVersion" => Some(sv(&m.api_version)),
                "Time" => Some(ptr_time(&m.time)),
                "FieldsType" => Some(sv(&m.fields_type)),
                "FieldsV1" => Some(ptr_opaque(&m.fields_v1, &PTR_FIELDS_V1)),
                "Subresource" => Some(sv(&m.subresource)),
                _ => None,
            },
            Obj::Toleration(t) => match name {
                "Key" => Some(sv(&t.key)),
                "Operator" => Some(snamed(&t.operator, &TOLERATION_OPERATOR)),
                "Value" => Some(sv(&t.value)),
                "Effect" => Some(snamed(&t.effect, &TAINT_EFFECT)),
                "TolerationSeconds" => Some(ptr_i64(t.toleration_seconds)),
                _ => None,
            },
            Obj::Taint(t) => match name {
                "Key" => Some(sreq(&t.key, &STRING)),
                "Value" => Some(sv(&t.value)),
                "Effect" => Some(sreq(&t.effect, &TAINT_EFFECT)),
                "TimeAdded" => Some(ptr_time(&t.time_added)),
                _ => None,
            },
            Obj::LocalObjectReference(r) => match name {
                "Name" => Some(sreq(&r.name, &STRING)),
                _ => None,
            },
            Obj::HostAlias(h) => match name {
                "IP" => Some(sreq(&h.ip, &STRING)),
                "Hostnames" => Some(strs(&h.hostnames)),
                _ => None,
            },
            Obj::PodReadinessGate(g) => match name {
                "ConditionType" => Some(sreq(&g.condition_type, &POD_CONDITION_TYPE)),
                _ => None,
            },
            Obj::PodSchedulingGate(g) => match name {
                "Name" => Some(sreq(&g.name, &STRING)),
                _ => None,
            },
            Obj::PodResourceClaim(c) => match name {
                "Name" => Some(sreq(&c.name, &STRING)),
                "ResourceClaimName" => Some(ptr_str(&c.resource_claim_name, &PTR_STRING)),
                "ResourceClaimTemplateName" => Some(ptr_str(&c.resource_claim_template_name, &PTR_STRING)),
                _ => None,
            },
            Obj::PodOS(o) => match name {
                "Name" => Some(sreq(&o.name, &OS_NAME)),
                _ => None,
            },
            Obj::Volume(v) => match name {
                "Name" => Some(sreq(&v.name, &STRING)),
                "VolumeSource" => Some(Val::Struct(Obj::Opaque(&VOLUME_SOURCE))),
                _ => None,
            },
            Obj::Time(t, ty) => match name {
                "Time" if std::ptr::eq(ty, &META_TIME) => Some(Val::Struct(Obj::Time(t, &GO_TIME))),
                _ => None,
            },
            Obj::Opaque(_) => None,
        };
        match v {
            Some(v) => FieldLookup::Found(v),
            None if desc(self.ty()).is_some_and(|d| !d.modeled || d.fields.contains(&name)) => FieldLookup::Unsupported,
            None => FieldLookup::Missing,
        }
    }
}

/// The struct description behind a struct type.
pub(crate) fn desc(ty: &Ty) -> Option<&'static StructDesc> {
    match ty.kind {
        Kind::Struct(d) => Some(d),
        _ => None,
    }
}

/// Method lookup on a receiver of (struct or pointer-to-struct or named map) type `ty`.
pub(crate) fn method(ty: &Ty, name: &str) -> MethodLookup {
    let base = match ty.kind {
        Kind::Ptr(e) => e,
        _ => ty,
    };
    if base.is(&RESOURCE_LIST) {
        const RL: &[&str] =
            &["Cpu", "DeepCopy", "DeepCopyInto", "Memory", "Name", "Pods", "Storage", "StorageEphemeral"];
        return if RL.contains(&name) { MethodLookup::Unsupported } else { MethodLookup::Missing };
    }
    let Some(d) = desc(base) else {
        return MethodLookup::Missing;
    };
    if !d.methods.contains(&name) {
        return MethodLookup::Missing;
    }
    let is_time = base.is(&META_TIME) || base.is(&GO_TIME);
    let id = if base.is(&OBJECT_META) {
        match name {
            "GetName"
            | "GetGenerateName"
            | "GetNamespace"
            | "GetSelfLink"
            | "GetUID"
            | "GetResourceVersion"
            | "GetGeneration"
            | "GetCreationTimestamp"
            | "GetDeletionTimestamp"
            | "GetDeletionGracePeriodSeconds"
            | "GetLabels"
            | "GetAnnotations"
            | "GetOwnerReferences"
            | "GetFinalizers"
            | "GetManagedFields" => {
                let field = D_OBJECT_META.fields.iter().find(|f| **f == &name[3..]).copied();
                match field {
                    Some(f) => MethodId::Getter(f),
                    None => return MethodLookup::Unsupported,
                }
            }
            _ => return MethodLookup::Unsupported,
        }
    } else if is_time {
        match name {
            "Unix" => MethodId::TimeUnix,
            "UnixMilli" => MethodId::TimeUnixMilli,
            "UnixMicro" => MethodId::TimeUnixMicro,
            "UnixNano" => MethodId::TimeUnixNano,
            "IsZero" => MethodId::TimeIsZero,
            "Year" => MethodId::TimeYear,
            "YearDay" => MethodId::TimeYearDay,
            "Day" => MethodId::TimeDay,
            "Hour" => MethodId::TimeHour,
            "Minute" => MethodId::TimeMinute,
            "Second" => MethodId::TimeSecond,
            "Nanosecond" => MethodId::TimeNanosecond,
            "String" => MethodId::TimeString,
            "UTC" | "Local" => MethodId::TimeUtc,
            "Rfc3339Copy" if base.is(&META_TIME) => MethodId::TimeRfc3339Copy,
            _ => return MethodLookup::Unsupported,
        }
    } else {
        return MethodLookup::Unsupported;
    };
    MethodLookup::Found(id)
}

/// Calls a zero-argument method on `recv` (already indirected; a nil pointer when the
/// Go receiver would be nil). Errors are the text Go's `safeCall` would report.
pub(crate) fn call_method<'a>(recv: &Val<'a>, id: MethodId) -> Result<Val<'a>, String> {
    const NIL_DEREF: &str = "runtime error: invalid memory address or nil pointer dereference";
    let obj = match recv {
        Val::Struct(o) => *o,
        _ => return Err(NIL_DEREF.into()),
    };
    if let MethodId::Getter(f) = id {
        return match obj.field(f) {
            FieldLookup::Found(v) => Ok(v),
            _ => Err(NIL_DEREF.into()),
        };
    }
    let Obj::Time(t, _) = obj else {
        return Err(NIL_DEREF.into());
    };
    let c = Civil::from(t);
    Ok(match id {
        MethodId::TimeUnix => Val::Int(c.unix, &INT64),
        MethodId::TimeUnixMilli => Val::Int(c.unix.wrapping_mul(1000) + (c.nanos / 1_000_000) as i64, &INT64),
        MethodId::TimeUnixMicro => Val::Int(c.unix.wrapping_mul(1_000_000) + (c.nanos / 1000) as i64, &INT64),
        MethodId::TimeUnixNano => Val::Int(c.unix.wrapping_mul(1_000_000_000).wrapping_add(c.nanos as i64), &INT64),
        MethodId::TimeIsZero => Val::Bool(t.is_none(), &BOOL),
        MethodId::TimeYear => Val::Int(c.year, &INT),
        MethodId::TimeYearDay => Val::Int(c.yday, &INT),
        MethodId::TimeDay => Val::Int(c.day, &INT),
        MethodId::TimeHour => Val::Int(c.hour, &INT),
        MethodId::TimeMinute => Val::Int(c.minute, &INT),
        MethodId::TimeSecond => Val::Int(c.second, &INT),
        MethodId::TimeNanosecond => Val::Int(c.nanos as i64, &INT),
        MethodId::TimeString => {
            let mut s = String::new();
            write_go_time(&mut s, t);
            Val::Str(Cow::Owned(s), &STRING)
        }
        MethodId::TimeUtc => Val::Struct(Obj::Time(t, &GO_TIME)),
        MethodId::TimeRfc3339Copy => {
            Val::Struct(Obj::Time(t.map(|t| t.round(k8s_openapi::jiff::Unit::Second).unwrap_or(t)), &META_TIME))
        }
        MethodId::Getter(_) => unreachable!(),
    })
}

fn object_meta_field<'a>(m: &'a meta::ObjectMeta, name: &str) -> Option<Val<'a>> {
    Some(match name {
        "Name" => sv(&m.name),
        "GenerateName" => sv(&m.generate_name),
        "Namespace" => sv(&m.namespace),
        "SelfLink" => sv(&m.self_link),
        "UID" => snamed(&m.uid, &UID),
        "ResourceVersion" => sv(&m.resource_version),
        "Generation" => int(m.generation, &INT64),
        "CreationTimestamp" => Val::Struct(Obj::Time(m.creation_timestamp.as_ref().map(|t| t.0), &META_TIME)),
        "DeletionTimestamp" => ptr_time(&m.deletion_timestamp),
        "DeletionGracePeriodSeconds" => ptr_i64(m.deletion_grace_period_seconds),
        "Labels" => map_ss(&m.labels),
        "Annotations" => map_ss(&m.annotations),
        "OwnerReferences" => Val::Slice(m.owner_references.as_deref().map(SliceRef::OwnerRefs), &SLICE_OWNER_REFERENCE),
        "Finalizers" => strs(&m.finalizers),
        "ManagedFields" => Val::Slice(m.managed_fields.as_deref().map(SliceRef::ManagedFields), &SLICE_MANAGED_FIELDS),
        _ => return None,
    })
}

fn pod_spec_field<'a>(s: &'a core::PodSpec, name: &str) -> Option<Val<'a>> {
    Some(match name {
        "Volumes" => Val::Slice(s.volumes.as_deref().map(SliceRef::Volumes), &SLICE_VOLUME),
        "InitContainers" => Val::Slice(s.init_containers.as_deref().map(SliceRef::Containers), &SLICE_CONTAINER),
        "Containers" => Val::Slice(Some(SliceRef::Containers(&s.containers)), &SLICE_CONTAINER),
        "EphemeralContainers" => {
            Val::Slice(s.ephemeral_containers.as_deref().map(SliceRef::Ephemeral), &SLICE_EPHEMERAL)
        }
        "RestartPolicy" => snamed(&s.restart_policy, &RESTART_POLICY),
        "TerminationGracePeriodSeconds" => ptr_i64(s.termination_grace_period_seconds),
        "ActiveDeadlineSeconds" => ptr_i64(s.active_deadline_seconds),
        "DNSPolicy" => snamed(&s.dns_policy, &DNS_POLICY),
        "NodeSelector" => map_ss(&s.node_selector),
        "ServiceAccountName" => sv(&s.service_account_name),
        "DeprecatedServiceAccount" => sv(&s.service_account),
        "AutomountServiceAccountToken" => ptr_bool(s.automount_service_account_token),
        "NodeName" => sv(&s.node_name),
        "HostNetwork" => boolv(s.host_network),
        "HostPID" => boolv(s.host_pid),
        "HostIPC" => boolv(s.host_ipc),
        "ShareProcessNamespace" => ptr_bool(s.share_process_namespace),
        "SecurityContext" => ptr_opaque(&s.security_context, &PTR_POD_SECURITY_CONTEXT),
        "ImagePullSecrets" => {
            Val::Slice(s.image_pull_secrets.as_deref().map(SliceRef::LocalRefs), &SLICE_LOCAL_OBJECT_REFERENCE)
        }
        "Hostname" => sv(&s.hostname),
        "Subdomain" => sv(&s.subdomain),
        "Affinity" => ptr_opaque(&s.affinity, &PTR_AFFINITY),
        "SchedulerName" => sv(&s.scheduler_name),
        "Tolerations" => Val::Slice(s.tolerations.as_deref().map(SliceRef::Tolerations), &SLICE_TOLERATION),
        "HostAliases" => Val::Slice(s.host_aliases.as_deref().map(SliceRef::HostAliases), &SLICE_HOST_ALIAS),
        "PriorityClassName" => sv(&s.priority_class_name),
        "Priority" => ptr(s.priority.map(|p| Val::Int(p.into(), &INT32)), &PTR_INT32),
        "DNSConfig" => ptr_opaque(&s.dns_config, &PTR_POD_DNS_CONFIG),
        "ReadinessGates" => {
            Val::Slice(s.readiness_gates.as_deref().map(SliceRef::ReadinessGates), &SLICE_READINESS_GATE)
        }
        "RuntimeClassName" => ptr_str(&s.runtime_class_name, &PTR_STRING),
        "EnableServiceLinks" => ptr_bool(s.enable_service_links),
        "PreemptionPolicy" => ptr_str(&s.preemption_policy, &PTR_PREEMPTION_POLICY),
        "Overhead" => Val::Map(s.overhead.as_ref().map(MapRef::Quantities), &RESOURCE_LIST),
        "TopologySpreadConstraints" => opaque_slice(&s.topology_spread_constraints, &SLICE_TOPOLOGY_SPREAD),
        "SetHostnameAsFQDN" => ptr_bool(s.set_hostname_as_fqdn),
        "OS" => ptr(s.os.as_ref().map(|o| Val::Struct(Obj::PodOS(o))), &PTR_POD_OS),
        "HostUsers" => ptr_bool(s.host_users),
        "SchedulingGates" => {
            Val::Slice(s.scheduling_gates.as_deref().map(SliceRef::SchedulingGates), &SLICE_SCHEDULING_GATE)
        }
        "ResourceClaims" => {
            Val::Slice(s.resource_claims.as_deref().map(SliceRef::ResourceClaims), &SLICE_RESOURCE_CLAIM)
        }
        "Resources" => ptr_opaque(&s.resources, &PTR_RESOURCE_REQUIREMENTS),
        // Newer than the Kubernetes API version k8s-openapi models: always nil.
        "HostnameOverride" => Val::Ptr(None, &PTR_STRING),
        "SchedulingGroup" => Val::Ptr(None, &PTR_POD_SCHEDULING_GROUP),
        _ => return None,
    })
}

impl<'d> TemplateData<'d> {
    pub(crate) fn field<'a>(&'a self, name: &str) -> Option<Val<'a>> {
        fn meta_ptr<'a>(m: &'a Option<Cow<'_, meta::ObjectMeta>>) -> Val<'a> {
            ptr(m.as_deref().map(|m| Val::Struct(Obj::ObjectMeta(m))), &PTR_OBJECT_META)
        }
        Some(match name {
            "TrustDomain" => Val::Str(Cow::Borrowed(&self.trust_domain), &STRING),
            "ClusterName" => Val::Str(Cow::Borrowed(&self.cluster_name), &STRING),
            "ClusterDomain" => Val::Str(Cow::Borrowed(&self.cluster_domain), &STRING),
            "PodMeta" => meta_ptr(&self.pod_meta),
            "PodSpec" => ptr(self.pod_spec.as_deref().map(|s| Val::Struct(Obj::PodSpec(s))), &PTR_POD_SPEC),
            "NodeMeta" => meta_ptr(&self.node_meta),
            "NodeSpec" => ptr(self.node_spec.as_deref().map(|s| Val::Struct(Obj::NodeSpec(s))), &PTR_NODE_SPEC),
            _ => return None,
        })
    }

    /// The value of `.` (and `$`): a `*spireentry.templateData`.
    pub(crate) fn root<'a>(&'a self) -> Val<'a> {
        let me: &'a TemplateData<'a> = self;
        Val::Ptr(Some(Box::new(Val::Struct(Obj::Root(me)))), &PTR_TEMPLATE_DATA)
    }
}

// ---------------------------------------------------------------------------------------
// Time

/// Seconds from 0001-01-01 (Go's zero time) to the Unix epoch.
const ZERO_TIME_UNIX: i64 = -62_135_596_800;

struct Civil {
    unix: i64,
    nanos: u32,
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    yday: i64,
}

impl Civil {
    fn from(t: Option<Timestamp>) -> Civil {
        let (unix, nanos) = match t {
            None => (ZERO_TIME_UNIX, 0),
            Some(t) => {
                let total = t.as_second() as i128 * 1_000_000_000 + t.subsec_nanosecond() as i128;
                (total.div_euclid(1_000_000_000) as i64, total.rem_euclid(1_000_000_000) as u32)
            }
        };
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const CUM: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yday = CUM[(month - 1) as usize] + day + i64::from(leap && month > 2);
        Civil { unix, nanos, year, month, day, hour: secs / 3600, minute: secs % 3600 / 60, second: secs % 60, yday }
    }
}

/// Go's `time.Time.String()` for a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`.
///
/// `metav1.Time` values decode into the process's local zone; the controller runs in
/// containers without a zone database, i.e. UTC, which is what we reproduce.
pub(crate) fn write_go_time(out: &mut String, t: Option<Timestamp>) {
    let c = Civil::from(t);
    let _ = write!(out, "{:04}-{:02}-{:02} {:02}:{:02}:{:02}", c.year, c.month, c.day, c.hour, c.minute, c.second);
    if c.nanos != 0 {
        let frac = format!("{:09}", c.nanos);
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_strings() {
        let mut s = String::new();
        write_go_time(&mut s, None);
        assert_eq!(s, "0001-01-01 00:00:00 +0000 UTC");
        s.clear();
        let t: Timestamp = "2024-01-02T03:04:05.5Z".parse().unwrap();
        write_go_time(&mut s, Some(t));
        assert_eq!(s, "2024-01-02 03:04:05.5 +0000 UTC");
        let c = Civil::from(Some("2024-03-01T00:00:00Z".parse().unwrap()));
        assert_eq!((c.year, c.month, c.day, c.yday), (2024, 3, 1, 61));
        assert_eq!(Civil::from(None).unix, ZERO_TIME_UNIX);
    }
}
