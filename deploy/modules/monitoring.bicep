// Workspace-based Application Insights for the Function app, optionally accepting Microsoft Entra ID ingestion only.

param workspaceName string
param appInsightsName string
param location string
param tags object

@description('Days the Log Analytics workspace keeps data.')
param retentionInDays int

@description('Reject instrumentation-key-only ingestion: every sender must present a Microsoft Entra ID token.')
param disableLocalAuth bool

@description('Principal ID of the app\'s user-assigned identity (publishes telemetry when local auth is off).')
param identityPrincipalId string

// Monitoring Metrics Publisher: the role Entra ID ingestion checks (learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication).
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: disableLocalAuth
    // Classic (non-workspace) ingestion is retired; data lands in the workspace.
    IngestionMode: 'LogAnalytics'
  }
}

resource publisherRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (disableLocalAuth) {
  name: guid(appInsights.id, identityPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output appInsightsName string = appInsights.name
// Not a secret: it names where to send, and with local auth off it authorises nothing on its own.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
