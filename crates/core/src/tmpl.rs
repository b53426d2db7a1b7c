//! The one place this crate touches the template engine.

pub use scm_template::{
    DEFAULT_PARENT_ID_TEMPLATE, DNS_NAME_TEMPLATE_NAME, PodFields, SPIFFE_ID_TEMPLATE_NAME, Template, TemplateData,
    WORKLOAD_SELECTOR_TEMPLATE_NAME,
};
