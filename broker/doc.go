// Package broker is the agent's embedded MQTT broker (mochi-mqtt): TLS on
// 127.0.0.1 only, clients authenticated by certificates of the agent's CA,
// topics authorized by identity, refusals audited. The agent publishes audit
// events on AuditMessage and monitor-notify decisions on Notifications;
// plugins publish under plugins/<id>/.
//
// Rules a reader needs (docs/plugins.md says the same for plugin authors):
//
//   - CONNECT: the TLS peer certificate must Identify with the CA (issued by
//     it, valid now, not revoked). User name and password are ignored. The
//     client id must be ROLE/NAME or ROLE/NAME/SUFFIX of that identity, so
//     one identity can never take over another's session; an empty client id
//     gets ROLE/NAME/<random>.
//   - plugin NAME publishes only under plugins/NAME/# and subscribes to
//     plugins/NAME/# and to the filters its Plugin document lists (fixed at
//     CONNECT: a changed document restarts the plugin).
//   - admin subscribes to everything and publishes nothing: changes go
//     through the API, where they are audited as ADMIN_ACTION, and a broker
//     publish by an operator could forge a plugin's heartbeat.
//   - Only the agent (the in-process client) publishes AuditMessage and
//     Notifications.
package broker
