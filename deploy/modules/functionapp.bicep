// The hosting plan and the Function app: .NET 10 isolated worker, user-assigned identity, identity-based storage.
//
// FC1 (Flex Consumption, Linux): runtime and deployment live in functionAppConfig; the app settings
//   FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION and WEBSITE_RUN_FROM_PACKAGE are not allowed there.
// EP1 (Elastic Premium, Linux): linuxFxVersion DOTNET-ISOLATED|10.0.
// Y1 (Consumption): WINDOWS. Linux Consumption gets no new language versions (.NET 9 is its last; it retires on
//   30 September 2028), so .NET 10 isolated is not supported there; Windows Consumption runs .NET 10 (netFrameworkVersion v10.0).
// EP1 and Y1 normally keep the code on an Azure Files share, which only takes an account key
// (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING). With shared keys off they run without the share instead: the code is a
// private blob named by WEBSITE_RUN_FROM_PACKAGE and fetched with the identity (learn.microsoft.com/azure/azure-functions/
// storage-considerations#create-an-app-without-azure-files). Docs note scale-out can be limited that way; one timer does not care.

param name string
param planName string
param location string
param tags object

@allowed([
  'FC1'
  'EP1'
  'Y1'
])
param planSku string

@description('Resource ID of the user-assigned identity.')
param identityId string

@description('Client ID of the user-assigned identity.')
param identityClientId string

param storageAccountName string

@description('URL of the package container, e.g. https://ACCOUNT.blob.core.windows.net/app-package.')
param packageContainerUrl string

@description('EP1/Y1: the blob in the package container the app runs from.')
param packageBlobName string

@description('FC1: memory of each instance, in MB.')
param instanceMemoryMB int

@description('FC1: most instances the app may scale out to.')
param maximumInstanceCount int

param appInsightsConnectionString string

@description('Authenticate telemetry with the identity (Application Insights with local auth disabled).')
param appInsightsEntraAuth bool

@description('The service\'s own settings (schedule, database, platforms, extras); host settings below win over them.')
param serviceSettings object

var isFlex = planSku == 'FC1'

var planBySku = {
  FC1: {
    kind: 'functionapp'
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    properties: {
      reserved: true
    }
  }
  EP1: {
    kind: 'elastic'
    sku: {
      name: 'EP1'
      tier: 'ElasticPremium'
    }
    properties: {
      reserved: true
      // One timer needs one instance; a little headroom for restarts and platform moves.
      maximumElasticWorkerCount: 3
    }
  }
  Y1: {
    kind: 'functionapp'
    sku: {
      name: 'Y1'
      tier: 'Dynamic'
    }
    properties: {
      // Windows: see the header for why Y1 is not Linux.
      reserved: false
    }
  }
}

// Identity-based AzureWebJobsStorage: no connection string; clientId picks the user-assigned identity.
var hostSettings = union({
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // DefaultAzureCredential (database tokens, docs/database.md) picks the user-assigned identity by this.
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
}, appInsightsEntraAuth ? {
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
} : {})

// EP1/Y1 only; on FC1 functionAppConfig carries the runtime and the package.
var classicSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'dotnet-isolated'
  WEBSITE_RUN_FROM_PACKAGE: '${packageContainerUrl}/${packageBlobName}'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identityId
}

var settings = union(serviceSettings, hostSettings, isFlex ? {} : classicSettings)

var siteConfigBySku = {
  FC1: {}
  EP1: {
    linuxFxVersion: 'DOTNET-ISOLATED|10.0'
  }
  Y1: {
    netFrameworkVersion: 'v10.0'
    use32BitWorkerProcess: false
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: planBySku[planSku].kind
  sku: planBySku[planSku].sku
  properties: planBySku[planSku].properties
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: planSku == 'Y1' ? 'functionapp' : 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with this identity; without it they would try a system-assigned one.
    keyVaultReferenceIdentity: identityId
    siteConfig: union(siteConfigBySku[planSku], {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      // string(): extraAppSettings may hold numbers or booleans; app settings are strings.
      appSettings: map(items(settings), setting => {
        name: setting.key
        value: string(setting.value)
      })
    })
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: packageContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      runtime: {
        name: 'dotnet-isolated'
        version: '10.0'
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
    } : null
  }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
